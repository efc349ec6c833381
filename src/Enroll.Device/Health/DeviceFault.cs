namespace Enroll.Device;

/// <summary>The kinds of fault a part of the device can be in; each names what is wrong, not where.</summary>
public enum DeviceFaultKind
{
    /// <summary>The broker cannot be reached (connection refused, reset, DNS, TLS handshake cut).</summary>
    BrokerUnreachable,

    /// <summary>The broker refused the device's credentials (CONNACK bad user name or password, not authorized).</summary>
    CredentialsRefused,

    /// <summary>The server does not answer requests within the attempt timeout.</summary>
    ServerSilent,

    /// <summary>The server answered with a permanent error (unauthorized, forbidden, rejected, invalid request).</summary>
    ServerRefused,

    /// <summary>The server is busy or out of resources and asked the device to come back later.</summary>
    ServerBusy,

    /// <summary>The server refused a stored message for good; it was moved to quarantine.</summary>
    MessageRefused,

    /// <summary>A message does not fit the broker's packet limit.</summary>
    MessageTooLarge,

    /// <summary>The outbox or state database is locked by another process.</summary>
    StorageLocked,

    /// <summary>The disk holding the state folder is full.</summary>
    DiskFull,

    /// <summary>The device's clock differs from the server's by more than tokens tolerate.</summary>
    ClockSkew,

    /// <summary>A background loop failed with an unexpected exception and is being restarted.</summary>
    Unexpected,
}

/// <summary>One fault a part of the device is in.</summary>
/// <param name="Component">The part: one of <see cref="DeviceComponents"/>.</param>
/// <param name="Kind">What is wrong.</param>
/// <param name="Message">What happened, for a person.</param>
/// <param name="Since">When the fault began.</param>
/// <param name="Occurrences">How many times it was reported since it began.</param>
public sealed record DeviceFault(string Component, DeviceFaultKind Kind, string Message, DateTimeOffset Since, int Occurrences);

/// <summary>The parts of the device that report faults.</summary>
public static class DeviceComponents
{
    /// <summary>Registration, provisioning and token care.</summary>
    public const string Registration = "registration";

    /// <summary>The data connection to the broker.</summary>
    public const string Connection = "connection";

    /// <summary>The outbox publisher.</summary>
    public const string Publisher = "publisher";

    /// <summary>
    /// Messages the publisher moved to quarantine (refused for good, or too large for the broker). Unlike the publisher's
    /// own faults this is not cleared when later messages flow: the quarantined rows stay until someone looks at them.
    /// </summary>
    public const string Quarantine = "quarantine";

    /// <summary>The outbox store (writes by <c>SendAsync</c>).</summary>
    public const string Outbox = "outbox";

    /// <summary>The twin: catching up with the desired state and sending reports.</summary>
    public const string Twin = "twin";

    /// <summary>Commands: asking for pending ones and sending results.</summary>
    public const string Commands = "commands";

    /// <summary>The agent loop.</summary>
    public const string Agent = "agent";
}
