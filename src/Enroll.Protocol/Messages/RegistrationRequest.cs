using System.Text.Json;
using System.Text.Json.Serialization;

namespace Enroll.Protocol.Messages;

/// <summary>
/// A registration request, published to <c>enroll/v1/register</c> (SPEC §2.1). It carries one credential:
/// <see cref="ProvisioningToken"/> (auto-approve tokens), <see cref="RegistrationToken"/>, or none when the server runs
/// with open registration.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record RegistrationRequest : IDeviceRequest
{
    /// <summary>The identifier the device chose itself (serial number, MAC). Required.</summary>
    public string? ClientId { get; init; }

    /// <summary>The Device ID the server assigned earlier, when the device has one.</summary>
    public string? DeviceId { get; init; }

    /// <summary>A human-friendly name for the device.</summary>
    public string? DeviceName { get; init; }

    /// <summary>The organisation; must match the credential's organisation when given.</summary>
    public string? OrgId { get; init; }

    /// <summary>Device facts, keys prefixed by group (<c>network_ip</c>, <c>memory_total</c>, ...).</summary>
    public Dictionary<string, JsonElement>? Metadata { get; init; }

    /// <summary>A Provisioning Token marked auto-approve.</summary>
    public string? ProvisioningToken { get; init; }

    /// <summary>The device's Registration Token.</summary>
    public string? RegistrationToken { get; init; }

    /// <summary>Echoed in the response; lets MQTT 3.1.1 clients match responses to requests.</summary>
    public string? RequestId { get; init; }
}
