namespace Enroll.Cli.Infrastructure;

/// <summary>What the process exit code means. Documented in <c>docs/cli.md</c>; <see cref="Failures"/> maps errors to them.</summary>
internal static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;

    /// <summary>An unexpected failure (a bug, or an error this table does not know yet).</summary>
    public const int Failure = 1;

    /// <summary>Invalid arguments or configuration: the command line, an option's value, a file it names.</summary>
    public const int Usage = 2;

    /// <summary>
    /// Refused for good: the server or broker refused (unauthorized, forbidden, rejected, not found, a TLS certificate),
    /// the device agent stopped for good, or another process owns the port or folder. Running the same command again
    /// cannot help until something changes.
    /// </summary>
    public const int Refused = 3;

    /// <summary>
    /// Unavailable, retry later: no answer in time, the server or broker could not be reached or asked to come back
    /// later, the outbox or the disk is full.
    /// </summary>
    public const int Unreachable = 4;

    /// <summary>Not found: the device is not registered (<c>enroll device status</c>).</summary>
    public const int NotRegistered = 5;

    /// <summary>A database in the device's state folder is corrupt or unreadable (<c>enroll device status</c>).</summary>
    public const int Damaged = 6;

    /// <summary>A command sent with <c>enroll commands send --wait</c> finished without succeeding (failed, rejected, expired, canceled).</summary>
    public const int CommandNotSucceeded = 7;

    /// <summary>A command interrupted by Ctrl+C before it finished (128 + SIGINT).</summary>
    public const int Interrupted = 130;
}
