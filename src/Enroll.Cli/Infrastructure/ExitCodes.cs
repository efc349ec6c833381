namespace Enroll.Cli.Infrastructure;

/// <summary>What the process exit code means. Documented in <c>docs/cli.md</c>.</summary>
internal static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;

    /// <summary>An unexpected failure.</summary>
    public const int Failure = 1;

    /// <summary>Invalid arguments or configuration.</summary>
    public const int Usage = 2;

    /// <summary>The server refused for good (unauthorized, forbidden, rejected, not found, ...).</summary>
    public const int Refused = 3;

    /// <summary>No answer in time, or the server or broker could not be reached.</summary>
    public const int Unreachable = 4;

    /// <summary>The device is not registered (<c>enroll device status</c>).</summary>
    public const int NotRegistered = 5;
}
