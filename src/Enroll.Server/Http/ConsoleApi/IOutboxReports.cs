using Enroll.Protocol.Admin;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>
/// The outboxes the fleet overview lists: what devices last reported of themselves (their status reports), deepest first.
/// The device status reports (<c>IDeviceStatusStore</c>) provide it; until they are wired in,
/// <see cref="NoOutboxReports"/> lists none.
/// </summary>
internal interface IOutboxReports
{
    /// <summary>At most <paramref name="limit"/> devices' last reported outboxes, the most messages pending first.</summary>
    Task<IReadOnlyList<DeviceOutboxInfo>> DeepestAsync(int limit, CancellationToken cancellationToken);
}

/// <summary>No reports: the overview shows an empty outbox table.</summary>
internal sealed class NoOutboxReports : IOutboxReports
{
    public Task<IReadOnlyList<DeviceOutboxInfo>> DeepestAsync(int limit, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<DeviceOutboxInfo>>([]);
}
