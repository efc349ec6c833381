namespace Enroll.Server;

/// <summary>What stopped a server from starting; the CLI maps it to an exit code.</summary>
public enum ServerStartProblem
{
    /// <summary>A setting is out of its valid range (see <see cref="EnrollServerOptions"/>); fix the command line.</summary>
    InvalidOptions,

    /// <summary>A port the server must listen on is taken by another process (<see cref="ServerStartException.Port"/>).</summary>
    PortInUse,

    /// <summary>Another process owns the data folder (<see cref="ServerStartException.HolderProcessId"/>, when known).</summary>
    DataFolderInUse,

    /// <summary>The database's schema is newer than this server knows (a newer server migrated it).</summary>
    DatabaseSchemaTooNew,

    /// <summary>
    /// The registry is shared (PostgreSQL) and no key-encryption key was given (<c>--key-encryption-key-file</c> or
    /// <c>ENROLL_KEY_ENCRYPTION_KEY</c>): every instance must be given the same one.
    /// </summary>
    KeyEncryptionKeyRequired,

    /// <summary>The key-encryption key given is missing, not base64 or not 32 bytes.</summary>
    KeyEncryptionKeyInvalid,

    /// <summary>The registry's keys are sealed under another key-encryption key than the one given (the message names both IDs).</summary>
    WrongKeyEncryptionKey,
}

/// <summary>
/// The server cannot start, for a reason a person can act on: the message is one line (no stack trace is needed) and
/// names the port, the folder and its owner, or the setting at fault. It is an <see cref="InvalidOperationException"/>,
/// so a host that already reports those as one line (as <c>enroll server</c> does) needs no change.
/// </summary>
public sealed class ServerStartException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public ServerStartException(ServerStartProblem problem, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Problem = problem;
    }

    /// <summary>Creates an <see cref="ServerStartProblem.InvalidOptions"/> exception.</summary>
    public ServerStartException()
        : this(ServerStartProblem.InvalidOptions, "the server cannot start")
    {
    }

    /// <summary>Creates an <see cref="ServerStartProblem.InvalidOptions"/> exception.</summary>
    public ServerStartException(string message)
        : this(ServerStartProblem.InvalidOptions, message)
    {
    }

    /// <summary>Creates an <see cref="ServerStartProblem.InvalidOptions"/> exception.</summary>
    public ServerStartException(string message, Exception innerException)
        : this(ServerStartProblem.InvalidOptions, message, innerException)
    {
    }

    /// <summary>Why the server did not start.</summary>
    public ServerStartProblem Problem { get; }

    /// <summary>The busy port, for <see cref="ServerStartProblem.PortInUse"/>.</summary>
    public int? Port { get; init; }

    /// <summary>The data folder, for <see cref="ServerStartProblem.DataFolderInUse"/>.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>The process that owns the data folder, for <see cref="ServerStartProblem.DataFolderInUse"/>, when known.</summary>
    public int? HolderProcessId { get; init; }
}
