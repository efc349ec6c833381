namespace Enroll.Cli.Infrastructure;

/// <summary>An admin API call failed; <see cref="ExitCode"/> says how.</summary>
internal sealed class AdminApiException(int exitCode, string message) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
