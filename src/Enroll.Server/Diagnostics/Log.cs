using Microsoft.Extensions.Logging;

namespace Enroll.Server.Diagnostics;

/// <summary>Log lines of the server. Tokens, keys and secrets are never logged.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "MQTT broker listening on {Endpoint}")]
    public static partial void BrokerStarted(ILogger logger, string endpoint);

    [LoggerMessage(24, LogLevel.Information, "MQTT broker limits: at most {MaxConnections} connections (open-file limit {Descriptors}), keep-alive at most {MaxKeepAliveSeconds} s")]
    public static partial void BrokerLimits(ILogger logger, int maxConnections, string descriptors, int maxKeepAliveSeconds);

    [LoggerMessage(2, LogLevel.Information, "Device {DeviceId} connected as client {ClientId}")]
    public static partial void DeviceConnected(ILogger logger, string deviceId, string clientId);

    [LoggerMessage(23, LogLevel.Information, "Device {DeviceId} disconnected: {Reason}")]
    public static partial void DeviceDisconnected(ILogger logger, string deviceId, string reason);

    [LoggerMessage(3, LogLevel.Warning, "Refused connection of client {ClientId} (user {UserName}) from {Endpoint}: {Reason} ({Count} refusal(s) since the last report)")]
    public static partial void ConnectionRefused(ILogger logger, string clientId, string userName, string endpoint, string reason, long count);

    [LoggerMessage(4, LogLevel.Information, "Published {Count} key(s) on {Topic}")]
    public static partial void KeysPublished(ILogger logger, int count, string topic);

    [LoggerMessage(5, LogLevel.Error, "Broker event handler failed")]
    public static partial void BrokerHandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(6, LogLevel.Information, "Device {DeviceId} registered ({Result}) by client {ClientId} in {OrgId}")]
    public static partial void DeviceRegistered(ILogger logger, string deviceId, string result, string clientId, string orgId);

    [LoggerMessage(7, LogLevel.Warning, "Refused {Operation} of client {ClientId} on {Topic}: {Reason}")]
    public static partial void AccessDenied(ILogger logger, string operation, string clientId, string topic, string reason);

    [LoggerMessage(20, LogLevel.Information, "Provisioning token {TokenId} created for {OrgId} (auto-approve: {AutoApprove})")]
    public static partial void ProvisioningTokenCreated(ILogger logger, string tokenId, string orgId, bool autoApprove);

    [LoggerMessage(21, LogLevel.Information, "Provisioning token {TokenId} revoked")]
    public static partial void ProvisioningTokenRevoked(ILogger logger, string tokenId);

    [LoggerMessage(22, LogLevel.Warning, "HTTP API: {Count} request(s) without a valid admin key since the last report (latest: {Path} from {Remote})")]
    public static partial void AdminUnauthorized(ILogger logger, long count, string path, string remote);

    [LoggerMessage(8, LogLevel.Warning, "SUSPICIOUS: a refreshed-away Registration Token of device {DeviceId} was used again by client {ClientId}; all of the device's tokens are revoked")]
    public static partial void RegistrationTokenReused(ILogger logger, string deviceId, string clientId);

    [LoggerMessage(9, LogLevel.Information, "Provisioning operation {OperationId} for client {ClientId} in {OrgId} is {Status}{Detail}")]
    public static partial void OperationStarted(ILogger logger, string operationId, string clientId, string orgId, string status, string detail);

    [LoggerMessage(10, LogLevel.Information, "Provisioning operation {OperationId} {Status} by {DecidedBy}; device {DeviceId}")]
    public static partial void OperationDecided(ILogger logger, string operationId, string status, string decidedBy, string deviceId);

    [LoggerMessage(11, LogLevel.Information, "Expired {Count} pending provisioning operation(s)")]
    public static partial void OperationsExpired(ILogger logger, int count);

    [LoggerMessage(12, LogLevel.Information, "Device {DeviceId} refreshed its Registration Token")]
    public static partial void RegistrationTokenRefreshed(ILogger logger, string deviceId);

    [LoggerMessage(13, LogLevel.Warning, "Device {DeviceId} revoked by an operator")]
    public static partial void DeviceRevoked(ILogger logger, string deviceId);

    [LoggerMessage(14, LogLevel.Warning, "Could not push the status of operation {OperationId} to {Topic}: {Reason}")]
    public static partial void PushFailed(ILogger logger, string operationId, string topic, string reason);

    [LoggerMessage(15, LogLevel.Warning, "Rotated keys: {SigningKeyId} now signs, {EncryptionKeyId} now receives encrypted requests; removed {Pruned} old key(s)")]
    public static partial void KeysRotated(ILogger logger, string signingKeyId, string encryptionKeyId, int pruned);

    [LoggerMessage(16, LogLevel.Warning, "Refused message {MessageId} of device {DeviceId}: {Reason}")]
    public static partial void MessageRefused(ILogger logger, string deviceId, string messageId, string reason);
}
