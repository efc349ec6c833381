using System.Data.Common;
using System.Text.Json;

namespace Enroll.Server.Registry;

/// <summary>
/// How every store keeps a record as a row: instants as Unix milliseconds, and the records read back from the same
/// column order (the stores' <c>SELECT</c> lists). One reader for SQLite and PostgreSQL, so a field added to a record is
/// read the same way by both.
/// </summary>
internal static class RegistryRows
{
    public static long ToUnix(DateTimeOffset value) => value.ToUnixTimeMilliseconds();

    public static long? ToUnix(DateTimeOffset? value) => value?.ToUnixTimeMilliseconds();

    public static DateTimeOffset FromUnix(long value) => DateTimeOffset.FromUnixTimeMilliseconds(value);

    public static DateTimeOffset? FromUnixNullable(DbDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));

    public static string? StringOrNull(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    /// <summary>id, secret_hash, org_id, description, auto_approve, max_uses, uses, expires_at, registration_token_lifetime, created_at, revoked_at.</summary>
    public static ProvisioningTokenRecord ReadToken(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        SecretHash = (byte[])r.GetValue(1),
        OrgId = r.GetString(2),
        Description = StringOrNull(r, 3),

        // SQLite keeps the flag as an integer, PostgreSQL as a boolean.
        AutoApprove = Convert.ToBoolean(r.GetValue(4), System.Globalization.CultureInfo.InvariantCulture),
        MaxUses = r.IsDBNull(5) ? null : r.GetInt32(5),
        Uses = r.GetInt32(6),
        ExpiresAt = FromUnixNullable(r, 7),
        RegistrationTokenLifetime = r.IsDBNull(8) ? null : TimeSpan.FromSeconds(r.GetInt64(8)),
        CreatedAt = FromUnix(r.GetInt64(9)),
        RevokedAt = FromUnixNullable(r, 10),
    };

    /// <summary>device_id, org_id, client_id, name, metadata, status, provisioning_token_id, created_at, updated_at, last_registered_at, tokens_valid_after, revoked_at.</summary>
    public static DeviceRecord ReadDevice(DbDataReader r) => new()
    {
        DeviceId = r.GetString(0),
        OrgId = r.GetString(1),
        ClientId = r.GetString(2),
        Name = StringOrNull(r, 3),
        MetadataJson = StringOrNull(r, 4),
        Status = r.GetString(5),
        ProvisioningTokenId = StringOrNull(r, 6),
        CreatedAt = FromUnix(r.GetInt64(7)),
        UpdatedAt = FromUnix(r.GetInt64(8)),
        LastRegisteredAt = FromUnixNullable(r, 9),
        TokensValidAfter = FromUnixNullable(r, 10),
        RevokedAt = FromUnixNullable(r, 11),
    };

    /// <summary>The operation's columns in the stores' order (operation_id ... completed_at).</summary>
    public static OperationRecord ReadOperation(DbDataReader r) => new()
    {
        OperationId = r.GetString(0),
        OrgId = r.GetString(1),
        ClientId = r.GetString(2),
        ProvisioningTokenId = r.GetString(3),
        DesiredDeviceId = StringOrNull(r, 4),
        DeviceId = StringOrNull(r, 5),
        ReprovisionOf = StringOrNull(r, 6),
        DeviceName = StringOrNull(r, 7),
        MetadataJson = StringOrNull(r, 8),
        Status = r.GetString(9),
        Reason = StringOrNull(r, 10),
        CreatedAt = FromUnix(r.GetInt64(11)),
        ExpiresAt = FromUnix(r.GetInt64(12)),
        DecidedAt = FromUnixNullable(r, 13),
        DecidedBy = StringOrNull(r, 14),
        RegistrationToken = StringOrNull(r, 15),
        RegistrationTokenId = StringOrNull(r, 16),
        RegistrationTokenExpiresAt = FromUnixNullable(r, 17),
        CompletedAt = FromUnixNullable(r, 18),
    };

    /// <summary>sequence, device_id, message_id, stream, created_at, received_at, content_type, properties, payload.</summary>
    public static StoredMessage ReadMessage(DbDataReader r) => new(
        r.GetInt64(0),
        new IngestedMessage
        {
            DeviceId = r.GetString(1),
            MessageId = r.GetString(2),
            Stream = r.GetString(3),
            CreatedAt = FromUnixNullable(r, 4),
            ReceivedAt = FromUnix(r.GetInt64(5)),
            ContentType = StringOrNull(r, 6),
            Properties = r.IsDBNull(7) ? new Dictionary<string, string>() : JsonSerializer.Deserialize(r.GetString(7), RegistryJsonContext.Default.DictionaryStringString)!,
            Payload = (byte[])r.GetValue(8),
        });

    /// <summary>The columns of a transfer in the stores' order, read by <see cref="ReadTransfer"/>.</summary>
    public const string TransferColumns =
        "device_id, transfer_id, kind, name, content_type, content_encoding, message_id, created_at, properties, size, chunk_size, chunk_count, sha256, state, reason, received, started_at, updated_at, file_id";

    /// <summary>A transfer from <see cref="TransferColumns"/>.</summary>
    public static TransferRecord ReadTransfer(DbDataReader r) => new()
    {
        DeviceId = r.GetString(0),
        TransferId = r.GetString(1),
        Kind = r.GetString(2),
        Name = r.GetString(3),
        ContentType = StringOrNull(r, 4),
        ContentEncoding = StringOrNull(r, 5),
        MessageId = StringOrNull(r, 6),
        CreatedAt = FromUnixNullable(r, 7),
        PropertiesJson = StringOrNull(r, 8),
        Size = r.GetInt64(9),
        ChunkSize = r.GetInt32(10),
        ChunkCount = r.GetInt32(11),
        Sha256 = r.GetString(12),
        State = r.GetString(13),
        Reason = StringOrNull(r, 14),
        Received = r.GetInt32(15),
        StartedAt = FromUnix(r.GetInt64(16)),
        UpdatedAt = FromUnix(r.GetInt64(17)),
        FileId = StringOrNull(r, 18),
    };

    /// <summary>The columns of a stored file in the stores' order, read by <see cref="ReadFile"/>.</summary>
    public const string FileColumns = "file_id, device_id, transfer_id, name, content_type, size, sha256, blob_key, created_at, received_at";

    /// <summary>A stored file from <see cref="FileColumns"/>.</summary>
    public static StoredFileRecord ReadFile(DbDataReader r) => new()
    {
        FileId = r.GetString(0),
        DeviceId = r.GetString(1),
        TransferId = r.GetString(2),
        Name = r.GetString(3),
        ContentType = StringOrNull(r, 4),
        Size = r.GetInt64(5),
        Sha256 = r.GetString(6),
        BlobKey = r.GetString(7),
        CreatedAt = FromUnixNullable(r, 8),
        ReceivedAt = FromUnix(r.GetInt64(9)),
    };
}
