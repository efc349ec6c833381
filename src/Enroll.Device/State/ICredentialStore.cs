namespace Enroll.Device;

/// <summary>
/// Durable storage of a device's <see cref="DeviceCredentials"/>. The default keeps them in an owner-only SQLite file in
/// the state folder; replace it to keep secrets in a TPM, a secure element or a platform keyring.
/// </summary>
public interface ICredentialStore
{
    /// <summary>Returns the stored credentials, or null when the device has none yet.</summary>
    ValueTask<DeviceCredentials?> LoadAsync(CancellationToken cancellationToken = default);

    /// <summary>Stores <paramref name="credentials"/> durably before returning.</summary>
    ValueTask SaveAsync(DeviceCredentials credentials, CancellationToken cancellationToken = default);

    /// <summary>Forgets the stored credentials.</summary>
    ValueTask ClearAsync(CancellationToken cancellationToken = default);
}
