using System.Collections.Concurrent;
using Enroll.Device.Connection;
using Enroll.Device.Diagnostics;
using Enroll.Device.Requests;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Requests;
using Enroll.Protocol.Topics;

namespace Enroll.Device;

public sealed partial class RegistrationService
{
    /// <summary>Status pushes by operation ID, signalled when the server announces a decision.</summary>
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _decisionPushes = new(StringComparer.Ordinal);

    /// <summary>Starts a provisioning operation (asking for the stored Device ID, if any) and waits for its outcome.</summary>
    private async Task<DeviceCredentials> ProvisionAsync(DeviceCredentials credentials, CancellationToken cancellationToken)
    {
        if (credentials.ProvisioningToken is null)
        {
            throw new EnrollException("the device holds no Provisioning Token to start a provisioning operation with");
        }

        var metadata = await MetadataAsync(cancellationToken).ConfigureAwait(false);
        var response = await _sender.SendAsync(
            EnrollRequests.ProvisioningInit,
            requestId => new ProvisioningInitRequest
            {
                ProvisioningToken = credentials.ProvisioningToken,
                ClientId = credentials.ClientId,
                DesiredDeviceId = credentials.DeviceId ?? _options.DesiredDeviceId,
                DeviceName = _options.DeviceName,
                OrgId = _options.OrgId ?? credentials.OrgId,
                Metadata = metadata,
                RequestId = requestId,
            },
            () => ConnectionCredentials.Anonymous(credentials.ClientId),
            connection => EnrollTopics.ClientResponses(connection.ClientId),
            new StateObserver(this),
            cancellationToken).ConfigureAwait(false);

        if (string.IsNullOrEmpty(response.OperationId))
        {
            throw new EnrollProtocolException("the server's provisioning answer lacks operation_id");
        }

        // Persist before waiting: a device restarted while pending resumes this operation instead of starting another.
        credentials = await SaveAsync(credentials with { PendingOperationId = response.OperationId, PendingOperationExpiresAt = response.ExpiresAt }, cancellationToken).ConfigureAwait(false);
        Log.OperationStarted(_logger, response.OperationId, response.Status ?? "?");
        return await CompleteProvisioningAsync(credentials, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits for the pending operation's decision — a push on the response topic, or polling <c>complete</c> as often as
    /// the server's <c>retry_after_seconds</c> says — then stores the Registration Token and registers with it.
    /// </summary>
    private async Task<DeviceCredentials> CompleteProvisioningAsync(DeviceCredentials credentials, CancellationToken cancellationToken)
    {
        var operationId = credentials.PendingOperationId!;
        var push = _decisionPushes.GetOrAdd(operationId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        try
        {
            while (true)
            {
                ProvisioningCompleteResponse response;
                try
                {
                    response = await _sender.SendAsync(
                        EnrollRequests.ProvisioningComplete,
                        requestId => new ProvisioningCompleteRequest { OperationId = operationId, ClientId = credentials.ClientId, ProvisioningToken = credentials.ProvisioningToken, RequestId = requestId },
                        () => ConnectionCredentials.Anonymous(credentials.ClientId),
                        connection => EnrollTopics.ClientResponses(connection.ClientId),
                        new StateObserver(this),
                        cancellationToken).ConfigureAwait(false);
                }
                catch (EnrollServerException ex) when (ex.IsPermanent)
                {
                    // Rejected, expired or unknown: this operation is over. A later start may begin a new one.
                    await SaveAsync(credentials with { PendingOperationId = null, PendingOperationExpiresAt = null }, cancellationToken).ConfigureAwait(false);
                    throw;
                }

                if (response.Status == OperationStatus.Approved && !string.IsNullOrEmpty(response.RegistrationToken) && !string.IsNullOrEmpty(response.DeviceId))
                {
                    Log.OperationApproved(_logger, operationId, response.DeviceId);
                    var approved = await WithRegistrationTokenAsync(credentials, response.RegistrationToken, response.DeviceId, cancellationToken).ConfigureAwait(false);
                    approved = await SaveAsync(approved with { PendingOperationId = null, PendingOperationExpiresAt = null }, cancellationToken).ConfigureAwait(false);
                    return await RegisterAsync(approved, Credential.RegistrationToken, cancellationToken).ConfigureAwait(false);
                }

                if (response.Status != OperationStatus.Pending)
                {
                    throw new EnrollProtocolException($"the server's answer to complete has status '{response.Status}' and no Registration Token");
                }

                var wait = TimeSpan.FromSeconds(Math.Clamp(response.RetryAfterSeconds ?? 10, 1, 3600));
                if (_options.UseJitter)
                {
                    wait = _jitter.Extend(wait, RetryPipelineFactory.RetryAfterJitter);
                }

                Log.WaitingForApproval(_logger, operationId, wait);
                await WaitForDecisionAsync(
                    push,
                    wait,
                    () => _state.TransitionTo(DeviceState.Pending, s => s with { OperationId = operationId, RetryIn = wait, Failure = null }),
                    cancellationToken).ConfigureAwait(false);
                if (push.Task.IsCompleted)
                {
                    push = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    _decisionPushes[operationId] = push;
                }
            }
        }
        finally
        {
            _decisionPushes.TryRemove(operationId, out _);
        }
    }

    /// <summary>
    /// Waits for a push or for <paramref name="wait"/>. The timer starts before <paramref name="waiting"/> announces the
    /// wait, so whoever reacts to the announcement (a test advancing a fake clock, say) finds the timer already running.
    /// </summary>
    private async Task WaitForDecisionAsync(TaskCompletionSource push, TimeSpan wait, Action waiting, CancellationToken cancellationToken)
    {
        using var delay = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var timer = Task.Delay(wait, _timeProvider, delay.Token);
        waiting();
        await Task.WhenAny(push.Task, timer).ConfigureAwait(false);
        await delay.CancelAsync().ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>Picks operation status pushes out of the messages no request was waiting for.</summary>
    private Task OnUnsolicitedAsync(IncomingMessage message)
    {
        if (!message.Topic.EndsWith("/responses", StringComparison.Ordinal))
        {
            // Twin pushes and commands: the management agent's.
            return Task.CompletedTask;
        }

        if (!EnrollJson.TryDeserialize(message.Payload, EnrollJsonContext.Default.ProvisioningCompleteResponse, out var status, out _)
            || status.OperationId is not { } operationId)
        {
            Log.UnmatchedResponse(_logger, message.Topic);
            return Task.CompletedTask;
        }

        if (_decisionPushes.TryGetValue(operationId, out var push))
        {
            Log.DecisionPushed(_logger, operationId, status.Status ?? "?");
            push.TrySetResult();
        }

        return Task.CompletedTask;
    }
}
