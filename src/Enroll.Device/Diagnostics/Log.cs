using Microsoft.Extensions.Logging;

namespace Enroll.Device.Diagnostics;

/// <summary>Every log line of the device library. Tokens and keys are never logged.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Connected to {Broker} as {Identity}")]
    public static partial void Connected(ILogger logger, string broker, string identity);

    [LoggerMessage(2, LogLevel.Warning, "Disconnected from {Broker}: {Reason}")]
    public static partial void Disconnected(ILogger logger, string broker, string reason);

    [LoggerMessage(3, LogLevel.Debug, "Disconnect failed: {Reason}")]
    public static partial void DisconnectFailed(ILogger logger, string reason);

    [LoggerMessage(4, LogLevel.Error, "Handler for a message on {Topic} failed")]
    public static partial void MessageHandlerFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(5, LogLevel.Error, "State database {Path} is corrupt ({Reason}); moved it to {MovedTo} and started a fresh one")]
    public static partial void StateDatabaseCorrupt(ILogger logger, string path, string movedTo, string reason);

    [LoggerMessage(10, LogLevel.Information, "Device {DeviceId} holds an access token valid until {ExpiresAt:O}; registration skipped")]
    public static partial void RegistrationSkipped(ILogger logger, string deviceId, DateTimeOffset expiresAt);

    [LoggerMessage(11, LogLevel.Information, "Sending {Request} (attempt {Attempt} of {MaxAttempts}) to {Topic}, answer expected on {ResponseTopic}")]
    public static partial void SendingRequest(ILogger logger, string request, int attempt, int maxAttempts, string topic, string responseTopic);

    [LoggerMessage(12, LogLevel.Warning, "{Request} attempt {Attempt} failed: {Reason}; retrying in {Delay}")]
    public static partial void RetryScheduled(ILogger logger, string request, int attempt, string reason, TimeSpan delay);

    [LoggerMessage(13, LogLevel.Information, "Registered as {DeviceId}; access token valid until {ExpiresAt:O}")]
    public static partial void Registered(ILogger logger, string deviceId, DateTimeOffset expiresAt);

    [LoggerMessage(14, LogLevel.Error, "Registration failed: {Reason}")]
    public static partial void RegistrationFailed(ILogger logger, string reason);

    [LoggerMessage(15, LogLevel.Warning, "The server no longer knows device {DeviceId}; registering as a new device")]
    public static partial void StoredDeviceUnknown(ILogger logger, string deviceId);

    [LoggerMessage(16, LogLevel.Information, "Registration service stopped")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(17, LogLevel.Information, "Fetched {Count} server signing key(s) from {Topic}")]
    public static partial void ServerKeysFetched(ILogger logger, int count, string topic);

    [LoggerMessage(18, LogLevel.Debug, "Ignoring a message on {Topic} that answers no pending request")]
    public static partial void UnmatchedResponse(ILogger logger, string topic);

    [LoggerMessage(19, LogLevel.Information, "Provisioning operation {OperationId} started ({Status})")]
    public static partial void OperationStarted(ILogger logger, string operationId, string status);

    [LoggerMessage(20, LogLevel.Information, "Waiting for an operator to decide operation {OperationId}; asking again in {Wait}")]
    public static partial void WaitingForApproval(ILogger logger, string operationId, TimeSpan wait);

    [LoggerMessage(21, LogLevel.Information, "Operation {OperationId} approved as device {DeviceId}")]
    public static partial void OperationApproved(ILogger logger, string operationId, string deviceId);

    [LoggerMessage(22, LogLevel.Information, "The server pushed status {Status} for operation {OperationId}")]
    public static partial void DecisionPushed(ILogger logger, string operationId, string status);

    [LoggerMessage(23, LogLevel.Warning, "The server refused the Registration Token ({Reason}); getting a new identity")]
    public static partial void RegistrationTokenRefused(ILogger logger, string reason);

    [LoggerMessage(24, LogLevel.Warning, "The Registration Token expired at {ExpiresAt:O}; getting a new identity")]
    public static partial void RegistrationTokenExpired(ILogger logger, DateTimeOffset expiresAt);

    [LoggerMessage(25, LogLevel.Information, "Refreshed the Registration Token of {DeviceId}; valid until {ExpiresAt:O}")]
    public static partial void RegistrationTokenRefreshed(ILogger logger, string deviceId, DateTimeOffset expiresAt);

    [LoggerMessage(26, LogLevel.Information, "Renewing the access token of {DeviceId}")]
    public static partial void RenewingAccessToken(ILogger logger, string deviceId);

    [LoggerMessage(27, LogLevel.Warning, "Token care failed ({Reason}); trying again in {Delay}")]
    public static partial void TokenCareRetry(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(28, LogLevel.Warning, "Could not register ({Reason}); trying again in {Delay}")]
    public static partial void AgentRetry(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(29, LogLevel.Error, "The device agent stops for good (no retry can help): {Reason}")]
    public static partial void AgentGaveUp(ILogger logger, string reason);

    [LoggerMessage(30, LogLevel.Debug, "Disconnected from {Broker}")]
    public static partial void DisconnectedCleanly(ILogger logger, string broker);

    [LoggerMessage(31, LogLevel.Warning, "The broker refused the device's access token ({Reason}); sending the request anonymously")]
    public static partial void AccessTokenRefusedAtConnect(ILogger logger, string reason);

    [LoggerMessage(41, LogLevel.Warning, "Cannot connect as the device ({Reason}); trying again in {Delay}")]
    public static partial void SessionRetry(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(80, LogLevel.Warning, "The broker refused the device's access token ({Reason}), {Refusals} time(s) in a row; registering again in {Delay}")]
    public static partial void SessionRefusedBackoff(ILogger logger, string reason, int refusals, TimeSpan delay);

    [LoggerMessage(81, LogLevel.Error, "The broker refused {Refusals} fresh access tokens in a row ({Reason}): it does not accept this server's device tokens (check the broker's device authentication); trying again in {Delay}")]
    public static partial void SessionCredentialsRefused(ILogger logger, int refusals, string reason, TimeSpan delay);

    [LoggerMessage(82, LogLevel.Warning, "The server's clock differs from the device's by {Offset} (server minus device; tolerance {Tolerance}); checking and scheduling tokens by the server's clock")]
    public static partial void ClockSkewMeasured(ILogger logger, TimeSpan offset, TimeSpan tolerance);

    [LoggerMessage(83, LogLevel.Error, "Moving the connection to the renewed access token failed unexpectedly")]
    public static partial void ReconnectFailed(ILogger logger, Exception exception);

    [LoggerMessage(42, LogLevel.Warning, "Outbox delivery interrupted ({Reason}); unacknowledged messages will be sent again")]
    public static partial void PublisherInterrupted(ILogger logger, string reason);

    [LoggerMessage(43, LogLevel.Error, "Outbox row {Sequence} (message {MessageId}) cannot be sent ({Reason}); moved it to quarantine")]
    public static partial void Quarantined(ILogger logger, long sequence, string messageId, string reason);

    [LoggerMessage(44, LogLevel.Warning, "The key set published on {Topic} cannot be used ({Reason}); keeping the keys held so far")]
    public static partial void ServerKeysUnreadable(ILogger logger, string topic, string reason);

    [LoggerMessage(60, LogLevel.Error, "The {Component} loop failed (failure {Failures} in a row); restarting it in {Delay}")]
    public static partial void LoopFailed(ILogger logger, string component, int failures, TimeSpan delay, Exception exception);

    [LoggerMessage(61, LogLevel.Warning, "Could not write the device's health file {Path}: {Reason}")]
    public static partial void HealthFileFailed(ILogger logger, string path, string reason);

    [LoggerMessage(45, LogLevel.Warning, "Outbox delivery paused ({Fault}: {Reason}); trying again in {Delay}")]
    public static partial void PublisherBackingOff(ILogger logger, DeviceFaultKind fault, string reason, TimeSpan delay);

    [LoggerMessage(46, LogLevel.Information, "Outbox delivery resumed after {Failures} failed attempt(s)")]
    public static partial void PublisherResumed(ILogger logger, int failures);

    [LoggerMessage(200, LogLevel.Information, "Twin synchronized with the server at desired version {Version}")]
    public static partial void TwinSynchronized(ILogger logger, long version);

    [LoggerMessage(201, LogLevel.Debug, "Applied desired version {Version} (whole document: {WholeDocument})")]
    public static partial void DesiredApplied(ILogger logger, long version, bool wholeDocument);

    [LoggerMessage(202, LogLevel.Information, "A desired patch with version {Version} does not follow the applied version {Applied}; asking the server for what was missed")]
    public static partial void TwinVersionGap(ILogger logger, long applied, long version);

    [LoggerMessage(203, LogLevel.Error, "A desired-change handler failed for version {Version}; the version counts as applied")]
    public static partial void DesiredHandlerFailed(ILogger logger, long version, Exception exception);

    [LoggerMessage(204, LogLevel.Warning, "Twin synchronization failed ({Reason}); trying again in {Delay}")]
    public static partial void TwinRetry(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(205, LogLevel.Debug, "The server acknowledged the reported state at version {Version}")]
    public static partial void ReportAcknowledged(ILogger logger, long version);

    [LoggerMessage(206, LogLevel.Warning, "The server refused a reported patch for good: {Reason}")]
    public static partial void ReportRefused(ILogger logger, string reason);

    [LoggerMessage(207, LogLevel.Warning, "Ignoring an unreadable message on {Topic}: {Reason}")]
    public static partial void UnreadableManagementMessage(ILogger logger, string topic, string reason);

    [LoggerMessage(210, LogLevel.Information, "Command {CommandId} ({Name}) finished: {Status}")]
    public static partial void CommandFinished(ILogger logger, string commandId, string name, string status);

    [LoggerMessage(211, LogLevel.Information, "Command {CommandId} was delivered again; it already ran ({Status}), so its stored result is sent again")]
    public static partial void CommandRedelivered(ILogger logger, string commandId, string status);

    [LoggerMessage(212, LogLevel.Debug, "The server acknowledged the result of command {CommandId} ({Status}; recorded as {State})")]
    public static partial void ResultAcknowledged(ILogger logger, string commandId, string status, string state);

    [LoggerMessage(213, LogLevel.Warning, "The server refused the result of command {CommandId} for good: {Reason}")]
    public static partial void ResultRefused(ILogger logger, string commandId, string reason);

    [LoggerMessage(214, LogLevel.Warning, "Commands: {Reason}; trying again in {Delay}")]
    public static partial void CommandsRetry(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(215, LogLevel.Debug, "The server delivered {Count} pending command(s)")]
    public static partial void CommandsPending(ILogger logger, int count);

    [LoggerMessage(216, LogLevel.Warning, "{Count} command(s) were running when the device last stopped; they are answered failed, not run again")]
    public static partial void CommandsInterrupted(ILogger logger, int count);

    [LoggerMessage(217, LogLevel.Error, "The result of command {CommandId} could not be recorded")]
    public static partial void CommandNotRecorded(ILogger logger, string commandId, Exception exception);

    [LoggerMessage(230, LogLevel.Warning, "Removed transfer {TransferId} ({Name}, {Chunks} chunk(s) copied): the process copying it stopped before the copy finished; send the file again")]
    public static partial void TransferAbandoned(ILogger logger, string transferId, string name, long chunks);

    [LoggerMessage(231, LogLevel.Debug, "Stored {Kind} transfer {TransferId}: {Size} bytes in {Chunks} chunk(s) of {ChunkSize}")]
    public static partial void TransferStored(ILogger logger, string kind, string transferId, long size, int chunks, int chunkSize);

    [LoggerMessage(232, LogLevel.Information, "Transfer {TransferId}: the server says {State}; {Deleted} chunk(s) it holds are not sent again, {Left} left to send")]
    public static partial void TransferResumed(ILogger logger, string transferId, string state, int deleted, long left);

    [LoggerMessage(233, LogLevel.Warning, "Transfer {TransferId}: asking the server what it holds failed ({Reason}); sending every chunk left (the server keeps each once)")]
    public static partial void TransferStatusFailed(ILogger logger, string transferId, string reason);

    [LoggerMessage(234, LogLevel.Warning, "Transfer {TransferId} moved to quarantine: {Reason}")]
    public static partial void TransferQuarantined(ILogger logger, string transferId, string reason);

    [LoggerMessage(260, LogLevel.Debug, "Reported the outbox to the server: {Pending} pending ({Bytes} bytes), {Quarantined} quarantined")]
    public static partial void StatusReported(ILogger logger, long pending, long bytes, long quarantined);

    [LoggerMessage(261, LogLevel.Debug, "Reporting the outbox to the server failed ({Reason}); trying again in {Interval}")]
    public static partial void StatusReportFailed(ILogger logger, string reason, TimeSpan interval);

    [LoggerMessage(262, LogLevel.Debug, "Could not read the outbox for a status report ({Reason}); trying again in {Interval}")]
    public static partial void StatusUnreadable(ILogger logger, string reason, TimeSpan interval);
}
