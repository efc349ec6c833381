using Microsoft.Extensions.Logging;

namespace Enroll.Server.Diagnostics;

/// <summary>Key store, key-encryption key and registry change feed (event IDs 1700-1719).</summary>
internal static partial class Log
{
    [LoggerMessage(1700, LogLevel.Information, "Imported {Use} key {KeyId} from {File} into the registry (moved to {ImportedFolder})")]
    public static partial void KeyImported(ILogger logger, string use, string keyId, string file, string importedFolder);

    [LoggerMessage(1701, LogLevel.Information, "Key {KeyId} from {File} is already in the registry; moved the file to {ImportedFolder}")]
    public static partial void KeyAlreadyImported(ILogger logger, string keyId, string file, string importedFolder);

    [LoggerMessage(1702, LogLevel.Information, "Created the first signing key {SigningKeyId} and encryption key {EncryptionKeyId} in the registry")]
    public static partial void FirstKeysCreated(ILogger logger, string signingKeyId, string encryptionKeyId);

    [LoggerMessage(1703, LogLevel.Information, "Reloaded the server keys from the registry: {SigningKeys} signing, {EncryptionKeys} encryption (current {SigningKeyId})")]
    public static partial void KeysReloaded(ILogger logger, int signingKeys, int encryptionKeys, string signingKeyId);

    [LoggerMessage(1704, LogLevel.Warning, "Could not reload the server keys from the registry after a change ({Reason}); keeping the keys held")]
    public static partial void KeysReloadFailed(ILogger logger, string reason);

    [LoggerMessage(1705, LogLevel.Information, "Created the key-encryption key {KekId} in {File}; back it up with the registry")]
    public static partial void KeyEncryptionKeyCreated(ILogger logger, string kekId, string file);

    [LoggerMessage(1706, LogLevel.Information, "Server keys are sealed under key-encryption key {KekId} (from {Source})")]
    public static partial void KeyEncryptionKeyInUse(ILogger logger, string kekId, string source);

    [LoggerMessage(1710, LogLevel.Warning, "Lost the registry change feed ({Reason}); listening again in {Delay}")]
    public static partial void RegistryChangesLost(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(1711, LogLevel.Information, "Listening to the registry change feed again after {Failures} failed attempt(s); reloading what may have changed")]
    public static partial void RegistryChangesReconnected(ILogger logger, int failures);

    [LoggerMessage(1712, LogLevel.Warning, "Ignored an unreadable registry change notification ({Length} characters)")]
    public static partial void RegistryChangeUnreadable(ILogger logger, int length);

    [LoggerMessage(1713, LogLevel.Error, "An observer of registry change '{Kind}' failed")]
    public static partial void RegistryChangeObserverFailed(ILogger logger, string kind, Exception exception);
}
