using System.Data.Common;
using System.Security.Cryptography;
using Enroll.Protocol.Commands;
using Enroll.Protocol.Messages;

namespace Enroll.Server.Registry;

/// <summary>
/// The commands aggregate (SPEC §2.6): commands an operator queued for a device, each with a time to live, moving
/// <c>queued → sent → succeeded | failed | rejected</c>, or to <c>expired</c> or <c>canceled</c>
/// (<see cref="CommandStatuses"/>). A device has at most <see cref="CommandLimits.MaxOutstandingPerDevice"/> commands
/// queued or sent; a final state is never left.
/// </summary>
internal interface ICommandStore
{
    /// <summary>
    /// Stores a new <c>queued</c> command for <paramref name="deviceId"/>, expiring <paramref name="ttl"/> after
    /// <paramref name="at"/>; refused with <see cref="EnqueueCommandResult.TooMany"/> when the device already has
    /// <see cref="CommandLimits.MaxOutstandingPerDevice"/> queued or sent (counted in the writing transaction, so
    /// concurrent enqueues never pass the limit), <see cref="EnqueueCommandResult.NoDevice"/> when it does not exist.
    /// With <paramref name="sentAt"/> it is stored already <c>sent</c> at that time: the caller publishes it right after
    /// the commit (one write instead of a store and a mark), and returns it to the queue with
    /// <see cref="ReturnCommandToQueueAsync"/> when the publish fails.
    /// </summary>
    Task<EnqueueCommandOutcome> EnqueueCommandAsync(string deviceId, string name, string? payload, TimeSpan ttl, DateTimeOffset at, string? rolloutId = null, DateTimeOffset? sentAt = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Puts a command stored as sent whose publish failed back in the queue (state <c>queued</c>, no sent time), so it
    /// shows as not delivered until the device's next commands/pending; false when it is no longer sent.
    /// </summary>
    Task<bool> ReturnCommandToQueueAsync(string commandId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The device's commands to deliver now — queued and sent ones not expired at <paramref name="now"/>, oldest first —
    /// with the queued ones marked sent at <paramref name="now"/> (a sent one is delivered again: the device
    /// de-duplicates by ID).
    /// </summary>
    Task<IReadOnlyList<CommandRecord>> TakeDeliverableCommandsAsync(string deviceId, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Marks a queued command sent at <paramref name="at"/> (after it was published); false when it was no longer queued.</summary>
    Task<bool> MarkCommandSentAsync(string commandId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Records the device's result (<paramref name="status"/> one of <see cref="CommandStatuses.Results"/>) for a command
    /// not yet finished. A finished command keeps its state and answers it (<see cref="CommandResultOutcome.AlreadyFinished"/>);
    /// a command of another device or an unknown ID is refused and nothing changes.
    /// </summary>
    Task<CommandChangeOutcome> RecordCommandResultAsync(string commandId, string deviceId, string status, string? payload, string? message, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Cancels a queued or sent command; a finished one keeps its state (<see cref="CommandResultOutcome.AlreadyFinished"/>).</summary>
    Task<CommandChangeOutcome> CancelCommandAsync(string commandId, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>
    /// Marks queued or sent commands whose expiry is at or before <paramref name="now"/> expired — at most
    /// <see cref="CommandRecord.ExpiryBatch"/>, soonest expiry first — and returns them.
    /// </summary>
    Task<IReadOnlyList<CommandRecord>> ExpireDueCommandsAsync(DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>The command, or null.</summary>
    Task<CommandRecord?> GetCommandAsync(string commandId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Commands in the order they were queued, optionally of one device and in one state, <paramref name="limit"/> at a
    /// time after the command <paramref name="afterCommandId"/> (the last of the previous page).
    /// </summary>
    Task<IReadOnlyList<CommandRecord>> ListCommandsAsync(string? deviceId, string? state, int limit, string? afterCommandId = null, CancellationToken cancellationToken = default);
}

/// <summary>A stored command. Payloads are JSON text (null when none).</summary>
internal sealed record CommandRecord(
    string CommandId,
    string DeviceId,
    string Name,
    string? Payload,
    string State,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt,
    DateTimeOffset? SentAt = null,
    DateTimeOffset? FinishedAt = null,
    string? ResultPayload = null,
    string? ResultMessage = null,
    string? RolloutId = null)
{
    /// <summary>The columns both stores select, in the order <see cref="Read"/> reads them.</summary>
    public const string Columns = "command_id, device_id, name, payload, state, created_at, expires_at, sent_at, finished_at, result_payload, result_message, rollout_id";

    /// <summary>Most commands one <see cref="ICommandStore.ExpireDueCommandsAsync"/> marks; the sweeper calls again at once while a call is full.</summary>
    public const int ExpiryBatch = 1000;

    private const string IdAlphabet = "abcdefghijkmnpqrstuvwxyz23456789";

    public bool IsFinal => CommandStatuses.IsFinal(State);

    public static CommandRecord Read(DbDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.GetString(2),
        RegistryRows.StringOrNull(r, 3),
        r.GetString(4),
        RegistryRows.FromUnix(r.GetInt64(5)),
        RegistryRows.FromUnix(r.GetInt64(6)),
        RegistryRows.FromUnixNullable(r, 7),
        RegistryRows.FromUnixNullable(r, 8),
        RegistryRows.StringOrNull(r, 9),
        RegistryRows.StringOrNull(r, 10),
        RegistryRows.StringOrNull(r, 11));

    /// <summary>A new command ID: <c>cmd_</c> and 20 random characters (100 bits).</summary>
    public static string NewId()
    {
        Span<byte> bytes = stackalloc byte[20];
        RandomNumberGenerator.Fill(bytes);
        var chars = new char[20];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = IdAlphabet[bytes[i] & 31];
        }

        return "cmd_" + new string(chars);
    }
}

/// <summary>How an enqueue ended.</summary>
internal enum EnqueueCommandResult
{
    /// <summary>Stored, queued.</summary>
    Queued,

    /// <summary>The device has <see cref="CommandLimits.MaxOutstandingPerDevice"/> outstanding; nothing stored.</summary>
    TooMany,

    /// <summary>No such device.</summary>
    NoDevice,
}

/// <summary>An enqueue's outcome, with the command when stored.</summary>
internal sealed record EnqueueCommandOutcome(EnqueueCommandResult Result, CommandRecord? Command = null);

/// <summary>How a result or a cancel ended.</summary>
internal enum CommandResultOutcome
{
    /// <summary>The command moved to the new state.</summary>
    Changed,

    /// <summary>It had already finished; its state is unchanged.</summary>
    AlreadyFinished,

    /// <summary>No command with that ID.</summary>
    NotFound,

    /// <summary>The command is another device's; nothing changed.</summary>
    WrongDevice,
}

/// <summary>A result's or a cancel's outcome, with the command as it now is (null when not found or another device's).</summary>
internal sealed record CommandChangeOutcome(CommandResultOutcome Result, CommandRecord? Command = null)
{
    public static readonly CommandChangeOutcome NotFound = new(CommandResultOutcome.NotFound);

    public static readonly CommandChangeOutcome WrongDevice = new(CommandResultOutcome.WrongDevice);
}
