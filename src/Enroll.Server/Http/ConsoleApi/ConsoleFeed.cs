using Enroll.Server.Registry;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Http.ConsoleApi;

/// <summary>
/// Announces, after the commit, what the console shows live (<c>GET /api/events</c>): an operation created or decided, a
/// command's state, a device registered or revoked, a twin patched. Announcements go on the registry's change feed
/// (<see cref="IRegistryChanges"/>: in-process on SQLite, <c>NOTIFY</c> on PostgreSQL), so a console attached to any
/// instance sees them. A feed that fails costs the console one event, never the write: it is logged and swallowed.
/// </summary>
internal sealed partial class ConsoleFeed(IRegistryChanges changes, ILogger<ConsoleFeed> logger)
{
    /// <summary>An operation was created, decided or expired; the ID is the operation's (none for an expiry sweep).</summary>
    public const string Operations = "operations";

    /// <summary>A command was queued or sent; the ID is the command's. A finished command is <see cref="Commands.CommandWaiters.ChangeKind"/>.</summary>
    public const string Commands = "commands";

    /// <summary>A device was registered or revoked; the ID is the device's.</summary>
    public const string Devices = "devices";

    /// <summary>A device's desired or reported twin changed; the ID is the device's.</summary>
    public const string Twins = "twins";

    public async Task AnnounceAsync(string kind, string? id)
    {
        try
        {
            // Committed already: a caller going away must not keep the consoles from hearing of it.
            await changes.AnnounceAsync(new RegistryChange(kind, id), CancellationToken.None).ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the change is committed; a lost announcement only costs consoles one live event
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogAnnounceFailed(logger, kind, id ?? "-", ex.Message);
        }
    }

    [LoggerMessage(EventId = 2050, Level = LogLevel.Warning, Message = "The console event {Kind} {Id} could not be announced on the registry change feed: {Reason}")]
    private static partial void LogAnnounceFailed(ILogger logger, string kind, string id, string reason);
}
