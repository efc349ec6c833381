using System.Net.Sockets;
using Enroll.Cli.Commands;
using Enroll.Device;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Enroll.Cli.Infrastructure;

/// <summary>
/// The one place that turns an exception into what a person sees: one line on standard error prefixed <c>enroll:</c>
/// and an exit code from <see cref="ExitCodes"/> (the table in <c>docs/cli.md</c>). With <c>--verbose</c> the full
/// exception follows the line; without it there is never a stack trace.
/// </summary>
internal static class Failures
{
    /// <summary>The program name every failure line starts with: <c>enroll</c>, or <c>enroll-agent</c> in the device agent.</summary>
    public static string Program { get; set; } = "enroll";

    private const int SqliteBusy = 5;
    private const int SqliteLocked = 6;
    private const int SqliteCorrupt = 11;
    private const int SqliteFull = 13;
    private const int SqliteNotADatabase = 26;

    /// <summary>Writes <paramref name="exception"/> as one line (and with <paramref name="verbose"/> its details) and returns its exit code.</summary>
    public static int Report(TextWriter error, Exception exception, bool verbose)
    {
        var (code, message) = Classify(exception);
        error.WriteLine($"{Program}: {OneLine(message)}");
        if (verbose)
        {
            error.WriteLine(exception.ToString());
        }

        return code;
    }

    /// <summary>The exit code and the message for <paramref name="exception"/>.</summary>
    public static (int Code, string Message) Classify(Exception exception) => exception switch
    {
        CliUsageException => (ExitCodes.Usage, exception.Message),
        AdminApiException admin => (admin.ExitCode, admin.Message),
        OptionsValidationException options => (ExitCodes.Usage, string.Join("; ", options.Failures)),
        MessageTooLargeException => (ExitCodes.Refused, $"{exception.Message} (the message was not stored)"),
        FileTooLargeException => (ExitCodes.Refused, exception.Message),
        OutboxStorageException { DiskFull: true } => (ExitCodes.Unreachable, $"{exception.Message} (earlier messages are intact; try again when space frees up)"),
        OutboxStorageException => (ExitCodes.Unreachable, exception.Message),
        OutboxFullException => (ExitCodes.Unreachable, $"{exception.Message} (this message was not stored; the agent frees space as it delivers, so try again later)"),
        EnrollServerException { IsPermanent: true } => (ExitCodes.Refused, $"the server refused: {exception.Message}"),
        EnrollServerException { RetryAfter: { } after } => (ExitCodes.Unreachable, $"the server could not serve the request: {exception.Message} (retry in {Durations.Format(after)})"),
        EnrollServerException => (ExitCodes.Unreachable, $"the server could not serve the request: {exception.Message}"),
        EnrollTimeoutException => (ExitCodes.Unreachable, exception.Message),
        EnrollConnectionException { CertificateRefused: true } => (ExitCodes.Refused, $"{exception.Message} (check --ca and the broker's host name; retrying cannot help)"),
        EnrollConnectionException { CredentialsRefused: true } => (ExitCodes.Refused, exception.Message),
        EnrollConnectionException => (ExitCodes.Unreachable, exception.Message),
        EnrollProtocolException => (ExitCodes.Refused, exception.Message),
        StateFolderInUseException => (ExitCodes.Refused, exception.Message),
        SqliteException { SqliteErrorCode: SqliteFull } => (ExitCodes.Unreachable, $"the disk is full: {exception.Message} (try again when space frees up)"),
        SqliteException { SqliteErrorCode: SqliteBusy or SqliteLocked } => (ExitCodes.Unreachable, $"the state database is locked by another process: {exception.Message}"),
        SqliteException { SqliteErrorCode: SqliteCorrupt or SqliteNotADatabase } => (ExitCodes.Damaged, $"a state database is corrupt: {exception.Message}"),
        IOException when IsDiskFull(exception) => (ExitCodes.Unreachable, $"the disk is full: {exception.Message} (try again when space frees up)"),
        SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } => (ExitCodes.Refused, $"{exception.Message} (another process uses the port)"),
        EnrollException => (ExitCodes.Failure, exception.Message),
        _ => (ExitCodes.Failure, $"unexpected failure: {exception.GetType().Name}: {exception.Message} (--verbose shows the details)"),
    };

    private static bool IsDiskFull(Exception exception) =>
        exception.HResult is 28 /* ENOSPC */ or unchecked((int)0x80070070) /* ERROR_DISK_FULL */ or unchecked((int)0x80070027) /* ERROR_HANDLE_DISK_FULL */;

    private static string OneLine(string message) =>
        message.ReplaceLineEndings(" ").Trim();
}
