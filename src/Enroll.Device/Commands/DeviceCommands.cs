using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Enroll.Protocol;
using Enroll.Protocol.Messages;

namespace Enroll.Device;

/// <summary>A command the server delivered to the device (SPEC §2.6).</summary>
/// <param name="CommandId">The command's ID: a command delivered twice has the same ID and runs once.</param>
/// <param name="Name">The name it was sent under.</param>
/// <param name="Payload">Its input, any JSON value; null when the operator gave none.</param>
/// <param name="ExpiresAt">When it stops being of use; the handler's cancellation token is cancelled then.</param>
public sealed record DeviceCommandRequest(string CommandId, string Name, JsonNode? Payload, DateTimeOffset? ExpiresAt);

/// <summary>What a command handler answers: <c>succeeded</c> with an optional payload, or <c>failed</c> with a message.</summary>
public sealed record CommandResult
{
    private CommandResult(string status, JsonNode? payload, string? message)
    {
        Status = status;
        Payload = payload;
        Message = message;
    }

    /// <summary><c>succeeded</c>, <c>failed</c> or <c>rejected</c> (<see cref="CommandStatuses"/>).</summary>
    public string Status { get; }

    /// <summary>The handler's output, any JSON value.</summary>
    public JsonNode? Payload { get; }

    /// <summary>Why it failed or was rejected, for people.</summary>
    public string? Message { get; }

    /// <summary>The command did what it was asked.</summary>
    public static CommandResult Succeeded(JsonNode? payload = null) => new(CommandStatuses.Succeeded, payload, null);

    /// <summary>The command ran and failed.</summary>
    public static CommandResult Failed(string message, JsonNode? payload = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new(CommandStatuses.Failed, payload, message);
    }

    /// <summary>The device will not run the command (for example: it does not know it).</summary>
    public static CommandResult Rejected(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new(CommandStatuses.Rejected, null, message);
    }

    internal static CommandResult From(string status, JsonNode? payload, string? message) => new(status, payload, message);
}

/// <summary>
/// The device's command handlers (SPEC §2.6). The agent runs the handler registered under a delivered command's name off
/// the connection's receive loop, with a cancellation token that fires at the command's expiry; a name without a handler
/// is answered <c>rejected</c>, a handler that throws <c>failed</c> with the exception's message, and a command already past
/// its expiry is not run (answered <c>failed</c>). Each command runs once: its result is kept in the state folder (the
/// newest 1,000 for up to 7 days) and re-sent, without running it again, when the command is delivered again; a result is
/// sent until the server acknowledges it.
/// </summary>
public sealed class DeviceCommands
{
    private readonly ConcurrentDictionary<string, Func<DeviceCommandRequest, CancellationToken, Task<CommandResult>>> _handlers = new(StringComparer.Ordinal);
    private Func<DeviceCommandRequest, CancellationToken, Task<CommandResult>>? _fallback;

    internal DeviceCommands()
    {
    }

    /// <summary>
    /// Registers (or replaces) the handler of the commands named <paramref name="name"/> (an identifier:
    /// <see cref="EnrollIdentifiers.Rule"/>).
    /// </summary>
    public void OnCommand(string name, Func<DeviceCommandRequest, CancellationToken, Task<CommandResult>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (!EnrollIdentifiers.IsValid(name))
        {
            throw new ArgumentException($"a command name must be {EnrollIdentifiers.Rule}", nameof(name));
        }

        _handlers[name] = handler;
    }

    /// <summary>Registers the handler of every command no <see cref="OnCommand"/> handler is registered for (for example one that hands commands to a program).</summary>
    public void OnAnyCommand(Func<DeviceCommandRequest, CancellationToken, Task<CommandResult>> handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _fallback = handler;
    }

    internal Func<DeviceCommandRequest, CancellationToken, Task<CommandResult>>? HandlerFor(string name) =>
        _handlers.TryGetValue(name, out var handler) ? handler : Volatile.Read(ref _fallback);
}
