namespace Enroll.Device.Tests.Fakes;

/// <summary>An in-memory <see cref="ICredentialStore"/>.</summary>
internal sealed class MemoryCredentialStore : ICredentialStore
{
    public DeviceCredentials? Stored { get; set; }

    public int Saves { get; private set; }

    public ValueTask<DeviceCredentials?> LoadAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(Stored);

    public ValueTask SaveAsync(DeviceCredentials credentials, CancellationToken cancellationToken = default)
    {
        Stored = credentials;
        Saves++;
        return ValueTask.CompletedTask;
    }

    public ValueTask ClearAsync(CancellationToken cancellationToken = default)
    {
        Stored = null;
        return ValueTask.CompletedTask;
    }
}
