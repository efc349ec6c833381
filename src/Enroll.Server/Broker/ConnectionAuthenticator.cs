using System.Collections;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Enroll.Protocol;
using Enroll.Server.Diagnostics;
using Enroll.Server.Handlers;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Logging;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace Enroll.Server.Broker;

/// <summary>
/// Decides at CONNECT who a client is on the embedded broker: a device (username = Device ID, password = access token,
/// connecting with the client ID it registered with), an anonymous client (which may only send requests and read its own
/// client topics), or an anonymous client vouched for by a client certificate. It grants the keep-alive and tells the
/// transport how long the connection may stay silent.
/// </summary>
internal sealed class ConnectionAuthenticator(
    EnrollServerOptions options,
    DeviceTokenValidator tokens,
    ServerMetrics metrics,
    TimeProvider timeProvider,
    ILogger logger,
    MqttServer server,
    Transport.GuardedServerAdapter adapter,
    Refusals.RefusalLog refusalLog)
{
    private readonly RepeatedCondition _refusals = new(timeProvider, RepeatedCondition.DefaultInterval);
    private readonly ConcurrentDictionary<string, byte> _deviceClientIds = new(StringComparer.Ordinal);

    /// <summary>The broker's <c>ValidatingConnectionAsync</c> handler.</summary>
    public async Task ValidateAsync(ValidatingConnectionEventArgs e)
    {
        try
        {
            await ValidateConnectionAsync(e).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // a failure while checking credentials must refuse the client, never let it in
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.BrokerHandlerFailed(logger, ex);
            Refuse(e, MqttConnectReasonCode.ServerUnavailable, "credentials could not be checked");
        }
    }

    /// <summary>Completes a CONNACK with what this connection was granted.</summary>
    public void CompleteConnAck(MqttConnAckPacket connAck, IDictionary sessionItems)
    {
        // MQTT 5 clients learn the listener's packet limit, so a device never sends a packet the guard would cut.
        connAck.MaximumPacketSize = (uint)options.MaxPacketBytes;
        if (sessionItems[BrokerSession.ServerKeepAlive] is ushort granted)
        {
            connAck.ServerKeepAlive = granted;
        }
    }

    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs e)
    {
        if (string.IsNullOrEmpty(e.ClientId))
        {
            // MQTT 5 lets the server assign an ID (MQTTnet refuses empty IDs under 3.1.1 regardless).
            e.AssignedClientIdentifier = "anon-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        }

        var clientId = string.IsNullOrEmpty(e.ClientId) ? e.AssignedClientIdentifier : e.ClientId;
        if (e.RemoteEndPoint is IPEndPoint remote)
        {
            e.SessionItems[BrokerSession.RemoteAddress] = remote.Address.ToString();
        }

        if (string.IsNullOrEmpty(e.UserName))
        {
            if (e.RawPassword is { Length: > 0 })
            {
                Refuse(e, MqttConnectReasonCode.BadUserNameOrPassword, "a password without a user name");
                return;
            }

            if (e.ClientCertificate is { } certificate)
            {
                // Checked against --client-ca during the handshake; it vouches for exactly one client ID, its common name.
                var commonName = certificate.GetNameInfo(X509NameType.SimpleName, false);
                if (!string.Equals(commonName, clientId, StringComparison.Ordinal))
                {
                    Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, $"the client certificate is for '{commonName}', not client ID '{clientId}'");
                    return;
                }

                e.SessionItems[BrokerSession.Certificate] = new CertificateIdentity(commonName, CertificateOrg(certificate));
            }

            // Anonymous clients may only request and read their own client topics (enforced per topic), and may not
            // take over the client ID of a connected device.
            if (await IsDeviceConnectedAsync(clientId).ConfigureAwait(false))
            {
                Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, "client ID in use by a connected device");
                return;
            }

            metrics.ConnectionAccepted("anonymous");
            LimitKeepAlive(e, isDevice: false);
            return;
        }

        if (e.UserName.StartsWith('$'))
        {
            Refuse(e, MqttConnectReasonCode.BadUserNameOrPassword, "reserved user name");
            return;
        }

        var check = await tokens.ValidateAccessTokenAsync(e.Password, e.UserName, e.CancellationToken).ConfigureAwait(false);
        if (!check.IsValid)
        {
            // A genuine token of a device that may no longer connect is "not authorized"; anything else is bad credentials.
            Refuse(e, check.Device is null ? MqttConnectReasonCode.BadUserNameOrPassword : MqttConnectReasonCode.NotAuthorized, check.Failure!);
            return;
        }

        // A device connects with the client ID it registered with; that also lets it take over its own stale session.
        if (!string.Equals(check.Device!.ClientId, clientId, StringComparison.Ordinal))
        {
            Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, $"device {e.UserName} must connect with its own client ID");
            return;
        }

        e.SessionItems[BrokerSession.DeviceId] = e.UserName;
        e.SessionItems[BrokerSession.PendingAcks] = IngestInterceptor.NewPendingAcks();
        _deviceClientIds.TryAdd(clientId, 0);
        metrics.ConnectionAccepted("device");
        LimitKeepAlive(e, isDevice: true);
        Log.DeviceConnected(logger, e.UserName, e.ClientId);
    }

    /// <summary>
    /// Grants a keep-alive of at most <see cref="EnrollServerOptions.MaxKeepAlive"/> (a client asking for 0 — none — or more
    /// gets the maximum, told in the CONNACK's Server Keep Alive under MQTT 5) and has the transport close the connection
    /// after 1.5 times that without a byte from the client.
    /// </summary>
    private void LimitKeepAlive(ValidatingConnectionEventArgs e, bool isDevice)
    {
        var max = (ushort)Math.Clamp(options.MaxKeepAlive.TotalSeconds, 1, ushort.MaxValue);
        var granted = e.KeepAlivePeriod is { } asked && asked > 0 && asked <= max ? asked : max;
        e.SessionItems[BrokerSession.ServerKeepAlive] = granted;
        adapter.Connected(e.ChannelAdapter, TimeSpan.FromSeconds(granted * 1.5), isDevice);
    }

    /// <summary>The organisation a client certificate names (its O attribute) when that is a valid identifier.</summary>
    private string CertificateOrg(X509Certificate2 certificate)
    {
        foreach (var part in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (part.GetSingleElementType().Value == "2.5.4.10" && part.GetSingleElementValue() is { } org && EnrollIdentifiers.IsValid(org))
            {
                return org;
            }
        }

        return options.ClientCertificateOrg;
    }

    private void Refuse(ValidatingConnectionEventArgs e, MqttConnectReasonCode code, string reason)
    {
        e.ReasonCode = code;
        e.ReasonString = reason;
        metrics.ConnectionRefused(reason);
        // By address, so one client retrying under ever new client IDs is still one row a minute.
        var kind = code is MqttConnectReasonCode.BadUserNameOrPassword or MqttConnectReasonCode.NotAuthorized ? Refusals.RefusalLog.CredentialRefused : Refusals.RefusalLog.ConnectionRefused;
        refusalLog.Record(kind, reason, (e.RemoteEndPoint as IPEndPoint)?.Address.ToString() ?? e.ClientId);
        // A client retrying bad credentials as fast as it can must not write a line per attempt: the latest refusal is
        // logged once per interval, with the number refused since the last line (every one is counted in the metrics).
        if (_refusals.Occurred(out var refused))
        {
            Log.ConnectionRefused(logger, e.ClientId ?? string.Empty, e.UserName ?? string.Empty, e.RemoteEndPoint?.ToString() ?? "?", reason, refused);
        }
    }

    /// <summary>
    /// True when a device (an authenticated session) holds <paramref name="clientId"/>. The broker's session table is the
    /// authority — it holds a session from before the CONNACK until the client is gone — and the set of client IDs ever
    /// used by devices (one entry per device, never removed, so a takeover cannot race it) spares that lookup for the
    /// many anonymous clients that never were.
    /// </summary>
    private async Task<bool> IsDeviceConnectedAsync(string clientId)
    {
        if (!_deviceClientIds.ContainsKey(clientId))
        {
            return false;
        }

        try
        {
            var session = await server.GetSessionAsync(clientId).ConfigureAwait(false);
            return session.Items[BrokerSession.DeviceId] is string;
        }
        catch (InvalidOperationException)
        {
            // No such session: the device is gone.
            return false;
        }
    }
}
