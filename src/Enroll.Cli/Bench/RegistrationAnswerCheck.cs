using System.Text.Json;
using Enroll.Protocol;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Shared.Tokens;
using Microsoft.IdentityModel.Tokens;
using MQTTnet;
using MQTTnet.Protocol;

namespace Enroll.Cli.Bench;

/// <summary>
/// What a device does with a registration answer before it counts as registered (the device library's
/// <c>ServerTokenVerifier</c>): both tokens through the shared validator — ES256 signature with the published key,
/// issuer, audience, explicit type and lifetime — and each naming the Device ID of the answer. The registration phase
/// and the work floor of <c>enroll bench register</c> both pay it, so neither is measured without the device's share.
/// </summary>
internal sealed class RegistrationAnswerCheck
{
    private readonly EnrollTokenValidator _validator = new(TimeProvider.System, ProtocolDefaults.Issuer, TimeSpan.FromSeconds(60));
    private readonly IReadOnlyList<SecurityKey> _keys;
    private string? _lastFailure;

    public RegistrationAnswerCheck(ServerKeySet keys)
    {
        _keys = ServerKeyConversions.ToVerificationKeys(keys);
    }

    /// <summary>Why the last refused answer was refused, for the report (null when none was).</summary>
    public string? LastFailure => Volatile.Read(ref _lastFailure);

    /// <summary>True when <paramref name="payload"/> is a registration answer whose two tokens a device would accept.</summary>
    public async Task<bool> AcceptsAsync(ReadOnlyMemory<byte> payload)
    {
        RegistrationResponse? response;
        try
        {
            response = JsonSerializer.Deserialize(payload.Span, EnrollJsonContext.Default.RegistrationResponse);
        }
        catch (JsonException ex)
        {
            return Refuse($"unreadable answer: {ex.Message}");
        }

        if (response is not { Error: null, DeviceId: { } deviceId, JwtToken: { } access, RegistrationToken: { } registration })
        {
            return Refuse(response?.Error is { } error ? $"error answer: {error.Code}" : "answer without Device ID or tokens");
        }

        var accessOutcome = await _validator.ValidateAsync(access, TokenTypes.Access, TokenAudiences.Broker, _keys).ConfigureAwait(false);
        if (!accessOutcome.IsValid || accessOutcome.Subject != deviceId)
        {
            return Refuse($"access token refused: {accessOutcome.Failure ?? "wrong subject"}");
        }

        var registrationOutcome = await _validator.ValidateAsync(registration, TokenTypes.Registration, TokenAudiences.Registration, _keys).ConfigureAwait(false);
        if (!registrationOutcome.IsValid || registrationOutcome.Subject != deviceId)
        {
            return Refuse($"Registration Token refused: {registrationOutcome.Failure ?? "wrong subject"}");
        }

        return true;
    }

    /// <summary>
    /// The server's key set as a device gets it: the retained <c>enroll/v1/server/keys</c> message, read by an
    /// anonymous client of its own.
    /// </summary>
    public static async Task<ServerKeySet> FetchServerKeysAsync(Uri broker, TimeSpan timeout)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var received = new TaskCompletionSource<ServerKeySet>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.ApplicationMessageReceivedAsync += e =>
        {
            if (e.ApplicationMessage.Topic == EnrollTopics.ServerKeys
                && EnrollJson.TryDeserialize(e.ApplicationMessage.Payload, EnrollJsonContext.Default.ServerKeySet, out var set, out _))
            {
                received.TrySetResult(set!);
            }

            return Task.CompletedTask;
        };
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(broker.Host, broker.Port)
            .WithClientId($"bench-keys-{Guid.NewGuid():N}"[..20])
            .WithCleanStart(true)
            .WithTimeout(timeout);
        if (broker.Scheme is "mqtts" or "ssl")
        {
            options.WithTlsOptions(tls => tls.UseTls().WithTargetHost(broker.Host));
        }

        await client.ConnectAsync(options.Build()).ConfigureAwait(false);
        try
        {
            await client.SubscribeAsync(EnrollTopics.ServerKeys, MqttQualityOfServiceLevel.AtLeastOnce).ConfigureAwait(false);
            try
            {
                return await received.Task.WaitAsync(timeout).ConfigureAwait(false);
            }
            catch (TimeoutException ex)
            {
                throw new InvalidOperationException($"the server published no key set on {EnrollTopics.ServerKeys} within {timeout.TotalSeconds:0} s", ex);
            }
        }
        finally
        {
            await client.DisconnectAsync().ConfigureAwait(false);
        }
    }

    private bool Refuse(string reason)
    {
        Volatile.Write(ref _lastFailure, reason);
        return false;
    }
}
