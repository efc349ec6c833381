namespace Enroll.Shared.Storage;

/// <summary>How hard SQLite works to keep a commit through a power loss.</summary>
internal enum SqliteDurability
{
    /// <summary>WAL with <c>synchronous=FULL</c>: a commit that returned survives power loss.</summary>
    Full,

    /// <summary>WAL with <c>synchronous=NORMAL</c>: survives a process crash, may lose the last commits on power loss.</summary>
    Relaxed,
}
