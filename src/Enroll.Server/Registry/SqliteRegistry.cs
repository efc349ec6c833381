using Enroll.Shared.Storage;
using Microsoft.Data.Sqlite;

namespace Enroll.Server.Registry;

/// <summary>
/// <see cref="IRegistry"/> on one SQLite file (WAL, <c>synchronous=FULL</c>). Writes go through the group-commit writer,
/// so concurrent registrations share commits; reads use pooled connections.
/// </summary>
internal sealed partial class SqliteRegistry : IRegistry
{
    public const string FileName = "registry.db";

    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE provisioning_tokens (
            id TEXT PRIMARY KEY,
            secret_hash BLOB NOT NULL,
            org_id TEXT NOT NULL,
            description TEXT,
            auto_approve INTEGER NOT NULL,
            max_uses INTEGER,
            uses INTEGER NOT NULL DEFAULT 0,
            expires_at INTEGER,
            registration_token_lifetime_s INTEGER,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER
        );
        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            device_name TEXT,
            metadata TEXT,
            status TEXT NOT NULL,
            provisioning_token_id TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            last_registered_at INTEGER,
            tokens_valid_after INTEGER,
            revoked_at INTEGER
        );
        CREATE UNIQUE INDEX devices_org_client ON devices (org_id, client_id);
        """,
        """
        CREATE TABLE provisioning_operations (
            operation_id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            provisioning_token_id TEXT NOT NULL,
            desired_device_id TEXT,
            device_id TEXT,
            reprovision_of TEXT,
            device_name TEXT,
            metadata TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            decided_at INTEGER,
            decided_by TEXT,
            registration_token TEXT,
            registration_token_jti TEXT,
            registration_token_expires_at INTEGER,
            completed_at INTEGER
        );
        CREATE INDEX provisioning_operations_status ON provisioning_operations (status, created_at);
        CREATE INDEX provisioning_operations_client ON provisioning_operations (org_id, client_id, status);
        CREATE INDEX provisioning_operations_token ON provisioning_operations (registration_token_jti);
        CREATE TABLE registration_tokens (
            jti TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            issued_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            replaced_by TEXT,
            replaced_at INTEGER,
            grace_used INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX registration_tokens_device ON registration_tokens (device_id);
        """,
        """
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            stream TEXT NOT NULL,
            created_at INTEGER,
            received_at INTEGER NOT NULL,
            content_type TEXT,
            properties TEXT,
            payload BLOB NOT NULL,
            UNIQUE (device_id, message_id)
        );
        CREATE INDEX messages_device ON messages (device_id, seq);
        """,
        """
        CREATE TABLE server_keys (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            key_id TEXT NOT NULL UNIQUE,
            use TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            sealed_key BLOB NOT NULL,
            kek_id TEXT NOT NULL
        );
        CREATE INDEX server_keys_use ON server_keys (use, seq);
        """,
        """
        CREATE TABLE credential_failures (
            key TEXT PRIMARY KEY,
            full_at INTEGER NOT NULL
        );
        CREATE INDEX credential_failures_full_at ON credential_failures (full_at);
        """,
        """
        CREATE TABLE twins (
            device_id TEXT PRIMARY KEY,
            desired TEXT NOT NULL,
            desired_version INTEGER NOT NULL,
            reported TEXT NOT NULL,
            reported_version INTEGER NOT NULL,
            updated_at INTEGER
        );
        CREATE TABLE twin_desired_patches (
            device_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            patch TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (device_id, version)
        );
        CREATE INDEX twin_desired_patches_created_at ON twin_desired_patches (created_at);
        """,
        """
        CREATE TABLE commands (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            command_id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            sent_at INTEGER,
            finished_at INTEGER,
            result_payload TEXT,
            result_message TEXT,
            rollout_id TEXT
        );
        CREATE INDEX commands_device ON commands (device_id, seq);
        CREATE INDEX commands_state ON commands (state, seq);
        CREATE INDEX commands_open_expiry ON commands (expires_at) WHERE state IN ('queued', 'sent');
        CREATE INDEX commands_rollout ON commands (rollout_id, state) WHERE rollout_id IS NOT NULL;
        CREATE TABLE command_rollouts (
            rollout_id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            filter TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT,
            ttl_ms INTEGER NOT NULL,
            rate_per_minute INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            next_at INTEGER NOT NULL,
            total INTEGER NOT NULL
        );
        CREATE TABLE command_rollout_targets (
            rollout_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            state TEXT NOT NULL,
            command_id TEXT,
            PRIMARY KEY (rollout_id, device_id)
        );
        CREATE INDEX command_rollout_targets_pending ON command_rollout_targets (rollout_id, state, device_id);
        """,
        """
        CREATE TABLE transfers (
            device_id TEXT NOT NULL,
            transfer_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            content_type TEXT,
            content_encoding TEXT,
            message_id TEXT,
            created_at INTEGER,
            properties TEXT,
            size INTEGER NOT NULL,
            chunk_size INTEGER NOT NULL,
            chunk_count INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            received INTEGER NOT NULL DEFAULT 0,
            started_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            file_id TEXT,
            PRIMARY KEY (device_id, transfer_id)
        );
        CREATE INDEX transfers_state ON transfers (state, updated_at);
        CREATE INDEX transfers_device_receiving ON transfers (device_id, kind) WHERE state = 'receiving';
        CREATE TABLE transfer_chunks (
            device_id TEXT NOT NULL,
            transfer_id TEXT NOT NULL,
            chunk_index INTEGER NOT NULL,
            PRIMARY KEY (device_id, transfer_id, chunk_index)
        ) WITHOUT ROWID;
        CREATE TABLE files (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            transfer_id TEXT NOT NULL,
            name TEXT NOT NULL,
            content_type TEXT,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            blob_key TEXT NOT NULL,
            created_at INTEGER,
            received_at INTEGER NOT NULL,
            UNIQUE (device_id, transfer_id)
        );
        CREATE INDEX files_device ON files (device_id, seq);
        """,
        // A device's open commands, counted on every enqueue (the limit) and read on every commands/pending: found
        // without walking the device's whole command history.
        """
        CREATE INDEX commands_device_open ON commands (device_id, seq) WHERE state IN ('queued', 'sent');
        """,
        // Issue 15, operators: operator accounts, console sessions, the audit log (IOperatorStore, IAuditStore).
        """
        CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            created_by TEXT,
            removed_at INTEGER
        );
        CREATE TABLE console_sessions (
            id_hash TEXT PRIMARY KEY,
            operator TEXT NOT NULL,
            is_admin INTEGER NOT NULL,
            csrf_token TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            last_seen INTEGER NOT NULL
        );
        CREATE INDEX console_sessions_operator ON console_sessions (operator);
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            operator TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            remote TEXT,
            status INTEGER NOT NULL,
            detail TEXT
        );
        CREATE INDEX audit_log_operator ON audit_log (operator, id);
        CREATE INDEX audit_log_action ON audit_log (action, id);
        """,
        // Issue 15, console: refusals and per-minute counts (IRefusalStore). A refusal row is one (minute, kind, source)
        // with a count; the series read the indexed instants of the registry's own rows.
        """
        CREATE TABLE refusals (
            minute INTEGER NOT NULL,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            reason TEXT,
            at INTEGER NOT NULL,
            refused INTEGER NOT NULL,
            PRIMARY KEY (minute, kind, source)
        );
        CREATE INDEX refusals_at ON refusals (at);
        CREATE INDEX registration_tokens_issued_at ON registration_tokens (issued_at);
        CREATE INDEX registration_tokens_replaced_by ON registration_tokens (replaced_by) WHERE replaced_by IS NOT NULL;
        CREATE INDEX provisioning_operations_decided_at ON provisioning_operations (decided_at) WHERE decided_at IS NOT NULL;
        CREATE INDEX messages_received_at ON messages (received_at);
        """,
        // Issue 15, console: device status reports and registration history (IDeviceStatusStore).
        """
        CREATE TABLE device_status (
            device_id TEXT PRIMARY KEY,
            reported_at INTEGER NOT NULL,
            pending INTEGER NOT NULL,
            pending_bytes INTEGER NOT NULL,
            oldest_age_s REAL,
            quarantined INTEGER NOT NULL
        );
        CREATE INDEX device_status_pending ON device_status (pending DESC, pending_bytes DESC, device_id);
        CREATE INDEX provisioning_operations_device ON provisioning_operations (device_id);
        CREATE INDEX provisioning_operations_reprovision ON provisioning_operations (reprovision_of);
        CREATE INDEX audit_log_target ON audit_log (target, id);
        """,
    ];

    private readonly SqliteDatabase _database;

    public SqliteRegistry(string path, SqliteDurability durability = SqliteDurability.Full)
    {
        // Devices keep messages and requests in flight and send the next as each is answered: without gathering, their
        // writes split into alternating half batches and pay about twice the commits (and fsyncs) for the same work.
        _database = new SqliteDatabase(path, durability) { GatherWrites = true };
        Migrate();
    }

    public string Path => _database.Path;

    /// <summary>Commits so far and writes they carried (group commit efficiency).</summary>
    public (long Commits, long Writes) CommitStatistics => (_database.Commits, _database.WritesCommitted);

    private void Migrate()
    {
        using var connection = _database.OpenRead();
        long version;
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA user_version;";
            version = (long)command.ExecuteScalar()!;
        }

        for (var i = (int)version; i < Migrations.Length; i++)
        {
            _database.ExecuteScript($"BEGIN; {Migrations[i]} PRAGMA user_version = {i + 1}; COMMIT;");
        }
    }

    private List<T> Query<T>(string sql, Func<SqliteDataReader, T> map, params (string Name, object? Value)[] parameters) =>
        _database.Read(context =>
        {
            using var reader = context.Command(sql, parameters).ExecuteReader();
            var results = new List<T>();
            while (reader.Read())
            {
                results.Add(map(reader));
            }

            return results;
        });

    private static T? QueryOne<T>(SqliteWriteContext context, string sql, Func<SqliteDataReader, T> map, params (string Name, object? Value)[] parameters)
        where T : class
    {
        using var reader = context.Command(sql, parameters).ExecuteReader();
        return reader.Read() ? map(reader) : null;
    }

    public ValueTask DisposeAsync() => _database.DisposeAsync();
}
