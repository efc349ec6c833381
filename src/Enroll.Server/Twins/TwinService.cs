using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Twins;

/// <summary>
/// Operator changes to desired twins (SPEC §2.5): the patch is committed through <see cref="ITwinStore"/>, then pushed to
/// the device on <c>enroll/v1/devices/{device_id}/twin/desired</c> as <see cref="TwinDesiredPatch"/> {version, patch}
/// (QoS 1, not retained) through whichever broker the server uses, whether or not the device is connected: a device
/// that misses the push asks with twin/get when it (re)connects. A push that fails is logged and counted
/// (<see cref="PushFailures"/>), never reported as a failed patch: the patch is already committed and the device will
/// catch up.
/// </summary>
internal sealed partial class TwinService
{
    /// <summary>Counter of desired pushes the broker did not take.</summary>
    public const string PushFailures = "enroll.server.twins.desired_push_failures";

    private readonly ITwinStore _store;
    private readonly Http.ConsoleApi.ConsoleFeed _feed;
    private readonly IDeviceStore _devices;
    private readonly IResponsePublisher _publisher;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger<TwinService> _logger;
    private readonly Counter<long> _pushFailures;

    public TwinService(ITwinStore store, IDeviceStore devices, IResponsePublisher publisher, TimeProvider timeProvider, ILogger<TwinService> logger, IMeterFactory meterFactory, Http.ConsoleApi.ConsoleFeed feed)
    {
        _feed = feed;
        ArgumentNullException.ThrowIfNull(meterFactory);
        _store = store;
        _devices = devices;
        _publisher = publisher;
        _timeProvider = timeProvider;
        _logger = logger;
        _pushFailures = meterFactory.Create(ServerInstruments.MeterName).CreateCounter<long>(PushFailures, "{push}", "Desired twin patches committed but not taken by the broker (the device catches up with twin/get)");
    }

    /// <summary>
    /// Patches one device's desired twin (<see cref="ITwinStore.PatchDesiredAsync"/>) and, when applied, pushes the patch
    /// to it, unless it is revoked (its twin may still be patched, but nothing is sent where a session it still holds on
    /// an external broker could read it).
    /// </summary>
    public async Task<DesiredPatchOutcome> PatchDesiredAsync(string deviceId, JsonObject patch, long? ifVersion, CancellationToken cancellationToken = default)
    {
        var outcome = await _store.PatchDesiredAsync(deviceId, patch, ifVersion, _timeProvider.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        if (outcome.Result == DesiredPatchResult.Applied)
        {
            LogDesiredPatched(_logger, deviceId, outcome.Version);
            await _feed.AnnounceAsync(Http.ConsoleApi.ConsoleFeed.Twins, deviceId).ConfigureAwait(false);
            // Committed: the caller going away now must not keep the device from being told.
            if ((await _devices.FindDeviceAsync(deviceId, CancellationToken.None).ConfigureAwait(false))?.IsActive == true)
            {
                await PushAsync(deviceId, outcome.Version, patch).ConfigureAwait(false);
            }
        }

        return outcome;
    }

    /// <summary>
    /// Patches the desired twin of every device <paramref name="filter"/> matches
    /// (<see cref="ITwinStore.PatchDesiredWhereAsync"/>) and pushes the patch to each it changed. Once begun the walk runs
    /// to its end even when the caller goes away: it commits batch by batch, and every committed patch must be pushed.
    /// </summary>
    public async Task<FleetPatchOutcome> PatchDesiredWhereAsync(TwinFilter filter, JsonObject patch)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var outcome = await _store.PatchDesiredWhereAsync(filter, patch, _timeProvider.GetUtcNow(), CancellationToken.None).ConfigureAwait(false);
        LogFleetPatched(_logger, filter.OrgId, filter, outcome.Touched.Count, outcome.Refused);
        foreach (var patched in outcome.Touched)
        {
            await PushAsync(patched.DeviceId, patched.Version, patch).ConfigureAwait(false);
        }

        return outcome;
    }

    private async Task PushAsync(string deviceId, long version, JsonObject patch)
    {
        try
        {
            var payload = JsonSerializer.SerializeToUtf8Bytes(new TwinDesiredPatch { Version = version, Patch = patch }, EnrollJsonContext.Default.TwinDesiredPatch);

            // Not the caller's token: the patch is committed, so its push is not abandoned when the operator's request ends.
            await _publisher.PublishAsync(EnrollTopics.DeviceTwinDesired(deviceId), payload, correlationData: null, retain: false, CancellationToken.None).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the patch is committed; a broker that cannot take the push now must not make it look failed
        catch (Exception ex)
#pragma warning restore CA1031
        {
            _pushFailures.Add(1);
            LogPushFailed(_logger, deviceId, version, ex.Message);
        }
    }

    [LoggerMessage(EventId = 1820, Level = LogLevel.Information, Message = "Desired twin of device {DeviceId} patched to version {Version}")]
    private static partial void LogDesiredPatched(ILogger logger, string deviceId, long version);

    [LoggerMessage(EventId = 1821, Level = LogLevel.Information, Message = "Fleet desired patch for organisation {OrgId} where {Conditions}: {Touched} devices patched, {Refused} refused (over the twin limits)")]
    private static partial void LogFleetPatched(ILogger logger, string orgId, TwinFilter conditions, int touched, int refused);

    [LoggerMessage(EventId = 1822, Level = LogLevel.Warning, Message = "Desired twin version {Version} of device {DeviceId} is committed but could not be pushed to it; it gets the patch with twin/get when it reconnects: {Reason}")]
    private static partial void LogPushFailed(ILogger logger, string deviceId, long version, string reason);
}
