using System.Text.Json;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Protocol;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;

namespace Enroll.Device;

public sealed partial class RegistrationService
{
    /// <summary>Which credential a registration request carries.</summary>
    private enum Credential
    {
        None,
        ProvisioningToken,
        RegistrationToken,
    }

    /// <summary>
    /// Gets the device registered with the best credential it holds: its Registration Token; else a pending operation's
    /// outcome; else its Provisioning Token (one request when auto-approve, a provisioning operation otherwise); else no
    /// credential at all (servers with open registration).
    /// </summary>
    private async Task<DeviceCredentials> ObtainRegistrationAsync(DeviceCredentials credentials, CancellationToken cancellationToken)
    {
        var now = _timeProvider.GetUtcNow();
        if (credentials.HasValidRegistrationToken(now))
        {
            try
            {
                return await RegisterAsync(credentials, Credential.RegistrationToken, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollServerException ex) when (ex.Code == ErrorCodes.Unauthorized && credentials.ProvisioningToken is not null)
            {
                Log.RegistrationTokenRefused(_logger, ex.ServerMessage);
            ReportRegistrationTokenRefused(ex);
                credentials = await SaveAsync(WithoutRegistrationToken(credentials), cancellationToken).ConfigureAwait(false);
            }
        }
        else if (credentials.RegistrationToken is not null && credentials.ProvisioningToken is not null)
        {
            Log.RegistrationTokenExpired(_logger, credentials.RegistrationTokenExpiresAt!.Value);
            credentials = await SaveAsync(WithoutRegistrationToken(credentials), cancellationToken).ConfigureAwait(false);
        }

        if (credentials.PendingOperationId is not null)
        {
            return await CompleteProvisioningAsync(credentials, cancellationToken).ConfigureAwait(false);
        }

        if (credentials.ProvisioningToken is not null && credentials.DeviceId is null && _options.DesiredDeviceId is not null)
        {
            // Only a provisioning operation can ask for a particular Device ID.
            return await ProvisionAsync(credentials, cancellationToken).ConfigureAwait(false);
        }

        if (credentials.ProvisioningToken is not null)
        {
            try
            {
                return await RegisterAsync(credentials, Credential.ProvisioningToken, cancellationToken).ConfigureAwait(false);
            }
            catch (EnrollServerException ex) when (ex.Code is ErrorCodes.ApprovalRequired or ErrorCodes.Forbidden)
            {
                // The token needs an operator, or the device was revoked: ask through a provisioning operation.
                return await ProvisionAsync(credentials, cancellationToken).ConfigureAwait(false);
            }
        }

        if (credentials.RegistrationToken is not null)
        {
            throw new EnrollException(
                $"the Registration Token expired on {credentials.RegistrationTokenExpiresAt:O} and the device holds no Provisioning Token to get a new one");
        }

        return await RegisterAsync(credentials, Credential.None, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends a registration request with <paramref name="credential"/> and stores the tokens it returns.</summary>
    private async Task<DeviceCredentials> RegisterAsync(DeviceCredentials credentials, Credential credential, CancellationToken cancellationToken)
    {
        var metadata = await MetadataAsync(cancellationToken).ConfigureAwait(false);
        RegistrationResponse response;
        try
        {
            response = await SendRegistrationAsync(credentials, credential, metadata, cancellationToken).ConfigureAwait(false);
        }
        catch (EnrollServerException ex) when (ex.Code == ErrorCodes.NotFound && credentials.DeviceId is not null && credential == Credential.ProvisioningToken)
        {
            // The server lost the device (for example a fresh database): start over as a new device.
            Log.StoredDeviceUnknown(_logger, credentials.DeviceId);
            credentials = credentials with { DeviceId = null, AccessToken = null, AccessTokenExpiresAt = null, RegistrationToken = null, RegistrationTokenExpiresAt = null };
            response = await SendRegistrationAsync(credentials, credential, metadata, cancellationToken).ConfigureAwait(false);
        }

        if (string.IsNullOrEmpty(response.DeviceId) || string.IsNullOrEmpty(response.JwtToken))
        {
            throw new EnrollProtocolException("the server's registration answer lacks device_id or jwt_token");
        }

        var access = await _verifier.VerifyAccessTokenAsync(_channel.Connection, response.JwtToken, response.DeviceId, cancellationToken).ConfigureAwait(false);
        var updated = credentials with
        {
            DeviceId = response.DeviceId,
            AccessToken = response.JwtToken,
            AccessTokenExpiresAt = access.ExpiresAt,
            AccessTokenIssuedAt = access.IssuedAt,
            AccessTokenRenewAt = RefreshSchedule.AccessRenewAt(access.IssuedAt, access.ExpiresAt, _options.AccessTokenRenewBefore, _jitter.Next()),
            RegisteredAt = _timeProvider.GetUtcNow(),
            OrgId = access.OrgId ?? _options.OrgId ?? credentials.OrgId,
            PendingOperationId = null,
            PendingOperationExpiresAt = null,
        };

        if (!string.IsNullOrEmpty(response.RegistrationToken))
        {
            updated = await WithRegistrationTokenAsync(updated, response.RegistrationToken, response.DeviceId, cancellationToken).ConfigureAwait(false);
        }
        else if (response.RefreshRegistrationToken == true)
        {
            // The server says the Registration Token is close to expiry: refresh it at the next opportunity.
            updated = updated with { RegistrationTokenRefreshAt = _timeProvider.GetUtcNow() };
        }

        updated = await SaveAsync(updated with { ServerKeys = _verifier.TrustedKeysJson ?? updated.ServerKeys }, cancellationToken).ConfigureAwait(false);
        Log.Registered(_logger, updated.DeviceId!, access.ExpiresAt);
        _metrics?.Registration("registered");
        _state.TransitionTo(DeviceState.Registered, s => WithIdentity(s, updated));
        MarkRegistered();
        return updated;
    }

    /// <summary>Verifies a Registration Token from the server and adds it (with its refresh time) to the credentials.</summary>
    private async Task<DeviceCredentials> WithRegistrationTokenAsync(DeviceCredentials credentials, string token, string deviceId, CancellationToken cancellationToken)
    {
        var verified = await _verifier.VerifyRegistrationTokenAsync(_channel.Connection, token, deviceId, cancellationToken).ConfigureAwait(false);
        return credentials with
        {
            DeviceId = deviceId,
            RegistrationToken = token,
            RegistrationTokenIssuedAt = verified.IssuedAt,
            RegistrationTokenExpiresAt = verified.ExpiresAt,
            RegistrationTokenRefreshAt = RefreshSchedule.RefreshAt(verified.IssuedAt, verified.ExpiresAt, _jitter.Next()),
            OrgId = verified.OrgId ?? credentials.OrgId,
        };
    }

    private static DeviceCredentials WithoutRegistrationToken(DeviceCredentials credentials) => credentials with
    {
        RegistrationToken = null,
        RegistrationTokenExpiresAt = null,
        RegistrationTokenIssuedAt = null,
        RegistrationTokenRefreshAt = null,
    };

    private async Task<Dictionary<string, JsonElement>?> MetadataAsync(CancellationToken cancellationToken) =>
        _options.SendMetadata
            ? new Dictionary<string, JsonElement>(await _deviceInfo.GetMetadataAsync(cancellationToken).ConfigureAwait(false), StringComparer.Ordinal)
            : null;

    private Task<RegistrationResponse> SendRegistrationAsync(DeviceCredentials credentials, Credential credential, Dictionary<string, JsonElement>? metadata, CancellationToken cancellationToken) =>
        _sender.SendAsync(
            EnrollRequests.Register,
            requestId => new RegistrationRequest
            {
                ClientId = credentials.ClientId,
                DeviceId = credentials.DeviceId,
                DeviceName = _options.DeviceName,
                OrgId = _options.OrgId ?? credentials.OrgId,
                Metadata = metadata,
                RegistrationToken = credential == Credential.RegistrationToken ? credentials.RegistrationToken : null,
                ProvisioningToken = credential == Credential.ProvisioningToken ? credentials.ProvisioningToken : null,
                RequestId = requestId,
            },
            () => ConnectionFor(credentials),
            connection => ResponseTopicFor(connection, credentials.DeviceId),
            new StateObserver(this),
            cancellationToken);

    private ConnectionCredentials ConnectionFor(DeviceCredentials credentials) =>
        credentials.HasValidAccessToken(_timeProvider.GetUtcNow(), TimeSpan.Zero)
            ? ConnectionCredentials.AsDevice(credentials.ClientId, credentials.DeviceId!, credentials.AccessToken!)
            : ConnectionCredentials.Anonymous(credentials.ClientId);

    /// <summary>
    /// The topic to hear the answer on: the device's own topic when connected as the device, else the client's topic.
    /// Under MQTT 3.1.1 the server picks the conventional topic, so the device listens there.
    /// </summary>
    private string ResponseTopicFor(ConnectionCredentials connection, string? deviceId)
    {
        if (_options.ProtocolVersion == MqttProtocol.V311)
        {
            return EnrollTopics.ConventionalResponseTopic(deviceId, connection.ClientId);
        }

        return connection.IsAuthenticated ? EnrollTopics.DeviceResponses(connection.Username!) : EnrollTopics.ClientResponses(connection.ClientId);
    }
}
