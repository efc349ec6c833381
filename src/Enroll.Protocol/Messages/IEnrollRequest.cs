namespace Enroll.Protocol.Messages;

/// <summary>What every request of protocol v1 carries besides its own fields.</summary>
public interface IEnrollRequest
{
    /// <summary>The sender's MQTT client ID; the server requires it and answers on the client's topic.</summary>
    string? ClientId { get; }

    /// <summary>Echoed in the response; lets MQTT 3.1.1 clients match responses to requests.</summary>
    string? RequestId { get; }
}

/// <summary>
/// A request that may name the sender's Device ID (<c>device_id</c>): its answer may then go to the device's own response
/// topic, and the server checks the ID like the client ID.
/// </summary>
public interface IDeviceRequest : IEnrollRequest
{
    /// <summary>The Device ID the server assigned earlier, when the device has one.</summary>
    string? DeviceId { get; }
}
