namespace Enroll.Device;

/// <summary>Base class of every error the device library raises.</summary>
public class EnrollException : Exception
{
    /// <summary>Creates the exception.</summary>
    public EnrollException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EnrollException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public EnrollException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// The server answered with an error. <see cref="IsPermanent"/> errors (<c>unauthorized</c>, <c>forbidden</c>,
/// <c>invalid_request</c>, <c>rejected</c>, ...) are not retried.
/// </summary>
public sealed class EnrollServerException : EnrollException
{
    /// <summary>Creates the exception from the server's error code and message.</summary>
    public EnrollServerException(string code, string message, TimeSpan? retryAfter = null)
        : base($"{code}: {message}")
    {
        Code = code;
        ServerMessage = message;
        RetryAfter = retryAfter;
    }

    /// <summary>Creates the exception.</summary>
    public EnrollServerException()
        : this("internal", "unknown error")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EnrollServerException(string message)
        : this("internal", message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public EnrollServerException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = "internal";
        ServerMessage = message;
    }

    /// <summary>The protocol error code, one of <see cref="Protocol.ErrorCodes"/>.</summary>
    public string Code { get; }

    /// <summary>The server's explanation.</summary>
    public string ServerMessage { get; }

    /// <summary>How long the server asked the device to wait, for transient errors.</summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>True when retrying cannot help.</summary>
    public bool IsPermanent => Protocol.ErrorCodes.IsPermanent(Code);
}

/// <summary>No answer arrived after every attempt allowed by the options.</summary>
public sealed class EnrollTimeoutException : EnrollException
{
    /// <summary>Creates the exception for <paramref name="attempts"/> unanswered attempts.</summary>
    internal EnrollTimeoutException(int attempts, Exception? lastError = null)
        : base(lastError is null
            ? $"no answer from the server after {attempts} attempt(s)"
            : $"no answer from the server after {attempts} attempt(s); last error: {lastError.Message}", lastError ?? new TimeoutException())
    {
        Attempts = attempts;
    }

    /// <summary>Creates the exception.</summary>
    public EnrollTimeoutException()
        : this(0)
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EnrollTimeoutException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public EnrollTimeoutException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>How many attempts were made.</summary>
    public int Attempts { get; }
}

/// <summary>The broker could not be reached, or refused the connection.</summary>
public sealed class EnrollConnectionException : EnrollException
{
    /// <summary>Creates the exception.</summary>
    public EnrollConnectionException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EnrollConnectionException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public EnrollConnectionException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>True when the broker refused the credentials (retrying with the same ones cannot help).</summary>
    public bool CredentialsRefused { get; init; }

    /// <summary>
    /// True when the device refused the server's TLS certificate (wrong CA, wrong host name, expired): retrying cannot
    /// help until the configuration changes.
    /// </summary>
    public bool CertificateRefused { get; init; }
}

/// <summary>
/// Another process (another <c>enroll device run</c> or <c>register</c>, or an application) owns the device's state
/// folder: two agents on one state folder would race each other's tokens. Stop the other process or use another folder.
/// </summary>
public sealed class StateFolderInUseException : EnrollException
{
    /// <summary>Creates the exception.</summary>
    public StateFolderInUseException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public StateFolderInUseException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public StateFolderInUseException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for <paramref name="statePath"/>, held by process <paramref name="holderPid"/> (if known).</summary>
    public StateFolderInUseException(string statePath, int? holderPid, Exception? innerException)
        : base(
            holderPid is { } pid
                ? $"the state folder {statePath} is in use by process {pid}; stop it or use another state folder"
                : $"the state folder {statePath} is in use by another process; stop it or use another state folder",
            innerException!)
    {
        StatePath = statePath;
        HolderPid = holderPid;
    }

    /// <summary>The state folder.</summary>
    public string? StatePath { get; }

    /// <summary>The process that holds it, when it could be read.</summary>
    public int? HolderPid { get; }
}

/// <summary>
/// A message could not be built, encrypted or understood, or a token from the server failed validation. These are never
/// retried: they point at a bug or an attack, not at a flaky network.
/// </summary>
public sealed class EnrollProtocolException : EnrollException
{
    /// <summary>Creates the exception.</summary>
    public EnrollProtocolException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EnrollProtocolException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public EnrollProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
