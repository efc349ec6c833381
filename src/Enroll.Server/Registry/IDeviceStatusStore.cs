using Enroll.Protocol.Admin;

namespace Enroll.Server.Registry;

/// <summary>What devices last reported of themselves (their outbox), and a device's registration history (issue 15).</summary>
internal interface IDeviceStatusStore
{
    /// <summary>
    /// Stores <paramref name="report"/> as its device's latest (one row per device). A report older than the one stored
    /// (<see cref="DeviceOutboxInfo.ReportedAt"/>) changes nothing: the newest report is kept whatever the arrival order.
    /// Returns true when the report was stored.
    /// </summary>
    Task<bool> SaveDeviceStatusAsync(DeviceOutboxInfo report, CancellationToken cancellationToken = default);

    /// <summary>The latest report of <paramref name="deviceId"/>, or null when it never reported.</summary>
    Task<DeviceOutboxInfo?> FindDeviceStatusAsync(string deviceId, CancellationToken cancellationToken = default);

    /// <summary>
    /// For the fleet overview: at most <paramref name="limit"/> latest reports with messages pending, the most pending first
    /// (then the most bytes, then by Device ID).
    /// </summary>
    Task<IReadOnlyList<DeviceOutboxInfo>> DeepestOutboxesAsync(int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// At most <paramref name="limit"/> entries of <paramref name="deviceId"/>'s history (<see cref="DeviceHistoryEntry"/>),
    /// newest first, older than the entry whose <see cref="DeviceHistoryEntry.Id"/> is <paramref name="before"/> when given.
    /// Read from the rows the registry keeps anyway: operations, the device, its Registration Tokens, the audit log.
    /// </summary>
    Task<IReadOnlyList<DeviceHistoryEntry>> ListDeviceHistoryAsync(string deviceId, int limit, DeviceHistoryCursor? before, CancellationToken cancellationToken = default);

    /// <summary>
    /// The device's Registration Tokens still in force at <paramref name="now"/> (not replaced by a refresh, not expired),
    /// newest first, at most <paramref name="limit"/>: the expiries the console shows.
    /// </summary>
    Task<IReadOnlyList<RegistrationTokenRecord>> ListLiveRegistrationTokensAsync(string deviceId, DateTimeOffset now, int limit, CancellationToken cancellationToken = default);
}

/// <summary>Where a page of a device's history starts: below the entry at <see cref="At"/> with sort key <see cref="Key"/>.</summary>
internal sealed record DeviceHistoryCursor(DateTimeOffset At, string Key)
{
    /// <summary>The cursor as <see cref="DeviceHistoryEntry.Id"/> carries it: <c>{unix ms}.{key}</c>.</summary>
    public string Format() => $"{At.ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture)}.{Key}";

    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out DeviceHistoryCursor? cursor)
    {
        cursor = null;
        var dot = text?.IndexOf('.', StringComparison.Ordinal) ?? -1;
        if (dot <= 0 || dot == text!.Length - 1
            || !long.TryParse(text.AsSpan(0, dot), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ms)
            || ms > 253402300799999)
        {
            return false;
        }

        cursor = new DeviceHistoryCursor(DateTimeOffset.FromUnixTimeMilliseconds(ms), text[(dot + 1)..]);
        return true;
    }
}
