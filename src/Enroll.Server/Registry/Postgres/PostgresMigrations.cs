using System.Globalization;
using Npgsql;

namespace Enroll.Server.Registry;

/// <summary>
/// The PostgreSQL schema as numbered migrations, applied at start in order, each in its own transaction with its row in
/// <c>enroll_schema_version</c>. Several instances starting together are serialised by a session advisory lock, so each
/// migration runs once; one that finds the schema already current changes nothing. A database whose schema is newer than
/// this server knows (a newer server migrated it) is refused: this server would not know what the newer columns mean.
/// </summary>
internal static class PostgresMigrations
{
    /// <summary>The advisory lock key every Enroll instance takes while it migrates ("enroll" in ASCII).</summary>
    public const long LockKey = 0x656e726f6c6c;

    public static readonly string[] Scripts =
    [
        """
        CREATE TABLE provisioning_tokens (
            id text PRIMARY KEY,
            secret_hash bytea NOT NULL,
            org_id text NOT NULL,
            description text,
            auto_approve boolean NOT NULL,
            max_uses integer,
            uses integer NOT NULL DEFAULT 0,
            expires_at bigint,
            registration_token_lifetime_s bigint,
            created_at bigint NOT NULL,
            revoked_at bigint
        );
        CREATE INDEX provisioning_tokens_created ON provisioning_tokens (created_at);
        CREATE TABLE devices (
            device_id text PRIMARY KEY,
            org_id text NOT NULL,
            client_id text NOT NULL,
            device_name text,
            metadata text,
            status text NOT NULL,
            provisioning_token_id text,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            last_registered_at bigint,
            tokens_valid_after bigint,
            revoked_at bigint
        );
        CREATE UNIQUE INDEX devices_org_client ON devices (org_id, client_id);
        CREATE INDEX devices_created ON devices (created_at, device_id);
        CREATE TABLE provisioning_operations (
            operation_id text PRIMARY KEY,
            org_id text NOT NULL,
            client_id text NOT NULL,
            provisioning_token_id text NOT NULL,
            desired_device_id text,
            device_id text,
            reprovision_of text,
            device_name text,
            metadata text,
            status text NOT NULL,
            reason text,
            created_at bigint NOT NULL,
            expires_at bigint NOT NULL,
            decided_at bigint,
            decided_by text,
            registration_token text,
            registration_token_jti text,
            registration_token_expires_at bigint,
            completed_at bigint
        );
        CREATE INDEX provisioning_operations_status ON provisioning_operations (status, created_at);
        CREATE INDEX provisioning_operations_client ON provisioning_operations (org_id, client_id, status);
        CREATE INDEX provisioning_operations_token ON provisioning_operations (registration_token_jti);
        CREATE TABLE registration_tokens (
            jti text PRIMARY KEY,
            device_id text NOT NULL,
            issued_at bigint NOT NULL,
            expires_at bigint NOT NULL,
            replaced_by text,
            replaced_at bigint,
            grace_used boolean NOT NULL DEFAULT false
        );
        CREATE INDEX registration_tokens_device ON registration_tokens (device_id);
        CREATE TABLE messages (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            device_id text NOT NULL,
            message_id text NOT NULL,
            stream text NOT NULL,
            created_at bigint,
            received_at bigint NOT NULL,
            content_type text,
            properties text,
            payload bytea NOT NULL,
            UNIQUE (device_id, message_id)
        );
        CREATE INDEX messages_device ON messages (device_id, seq);
        """,
        """
        CREATE TABLE server_keys (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key_id text NOT NULL UNIQUE,
            use text NOT NULL,
            created_at bigint NOT NULL,
            sealed_key bytea NOT NULL,
            kek_id text NOT NULL
        );
        CREATE INDEX server_keys_use ON server_keys (use, seq);
        """,
        """
        CREATE TABLE credential_failures (
            key text PRIMARY KEY,
            full_at bigint NOT NULL
        );
        CREATE INDEX credential_failures_full_at ON credential_failures (full_at);
        """,
        """
        CREATE TABLE twins (
            device_id text PRIMARY KEY,
            desired text NOT NULL,
            desired_version bigint NOT NULL,
            reported text NOT NULL,
            reported_version bigint NOT NULL,
            updated_at bigint
        );
        CREATE TABLE twin_desired_patches (
            device_id text NOT NULL,
            version bigint NOT NULL,
            patch text NOT NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (device_id, version)
        );
        CREATE INDEX twin_desired_patches_created_at ON twin_desired_patches (created_at);
        """,
        """
        CREATE TABLE commands (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            command_id text NOT NULL UNIQUE,
            device_id text NOT NULL,
            name text NOT NULL,
            payload text,
            state text NOT NULL,
            created_at bigint NOT NULL,
            expires_at bigint NOT NULL,
            sent_at bigint,
            finished_at bigint,
            result_payload text,
            result_message text,
            rollout_id text
        );
        CREATE INDEX commands_device ON commands (device_id, seq);
        CREATE INDEX commands_state ON commands (state, seq);
        CREATE INDEX commands_open_expiry ON commands (expires_at) WHERE state IN ('queued', 'sent');
        CREATE INDEX commands_rollout ON commands (rollout_id, state) WHERE rollout_id IS NOT NULL;
        CREATE TABLE command_rollouts (
            rollout_id text PRIMARY KEY,
            org_id text NOT NULL,
            filter text NOT NULL,
            name text NOT NULL,
            payload text,
            ttl_ms bigint NOT NULL,
            rate_per_minute bigint NOT NULL,
            created_at bigint NOT NULL,
            next_at bigint NOT NULL,
            total bigint NOT NULL
        );
        CREATE TABLE command_rollout_targets (
            rollout_id text NOT NULL,
            device_id text NOT NULL,
            state text NOT NULL,
            command_id text,
            PRIMARY KEY (rollout_id, device_id)
        );
        CREATE INDEX command_rollout_targets_pending ON command_rollout_targets (rollout_id, state, device_id);
        """,
        """
        CREATE TABLE transfers (
            device_id text NOT NULL,
            transfer_id text NOT NULL,
            kind text NOT NULL,
            name text NOT NULL,
            content_type text,
            content_encoding text,
            message_id text,
            created_at bigint,
            properties text,
            size bigint NOT NULL,
            chunk_size integer NOT NULL,
            chunk_count integer NOT NULL,
            sha256 text NOT NULL,
            state text NOT NULL,
            reason text,
            received integer NOT NULL DEFAULT 0,
            started_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            file_id text,
            PRIMARY KEY (device_id, transfer_id)
        );
        CREATE INDEX transfers_receiving_updated ON transfers (updated_at) WHERE state = 'receiving';
        CREATE INDEX transfers_receiving_started ON transfers (started_at, device_id, transfer_id) WHERE state = 'receiving';
        CREATE INDEX transfers_finished ON transfers (updated_at) WHERE state <> 'receiving';
        CREATE TABLE transfer_chunks (
            device_id text NOT NULL,
            transfer_id text NOT NULL,
            chunk_index integer NOT NULL,
            PRIMARY KEY (device_id, transfer_id, chunk_index)
        );
        CREATE TABLE files (
            file_id text PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            device_id text NOT NULL,
            transfer_id text NOT NULL,
            name text NOT NULL,
            content_type text,
            size bigint NOT NULL,
            sha256 text NOT NULL,
            blob_key text NOT NULL,
            created_at bigint,
            received_at bigint NOT NULL,
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
            name text PRIMARY KEY,
            key_hash text NOT NULL UNIQUE,
            created_at bigint NOT NULL,
            created_by text,
            removed_at bigint
        );
        CREATE TABLE console_sessions (
            id_hash text PRIMARY KEY,
            operator text NOT NULL,
            is_admin boolean NOT NULL,
            csrf_token text NOT NULL,
            created_at bigint NOT NULL,
            expires_at bigint NOT NULL,
            last_seen bigint NOT NULL
        );
        CREATE INDEX console_sessions_operator ON console_sessions (operator);
        CREATE TABLE audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at bigint NOT NULL,
            operator text NOT NULL,
            action text NOT NULL,
            target text,
            remote text,
            status integer NOT NULL,
            detail text
        );
        CREATE INDEX audit_log_operator ON audit_log (operator, id);
        CREATE INDEX audit_log_action ON audit_log (action, id);
        """,
        // Issue 15, console: refusals and per-minute counts (IRefusalStore). A refusal row is one (minute, kind, source)
        // with a count; the series read the indexed instants of the registry's own rows.
        """
        CREATE TABLE refusals (
            minute bigint NOT NULL,
            kind text NOT NULL,
            source text NOT NULL,
            reason text,
            at bigint NOT NULL,
            refused bigint NOT NULL,
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
            device_id text PRIMARY KEY,
            reported_at bigint NOT NULL,
            pending bigint NOT NULL,
            pending_bytes bigint NOT NULL,
            oldest_age_s double precision,
            quarantined bigint NOT NULL
        );
        CREATE INDEX device_status_pending ON device_status (pending DESC, pending_bytes DESC, device_id);
        CREATE INDEX provisioning_operations_device ON provisioning_operations (device_id);
        CREATE INDEX provisioning_operations_reprovision ON provisioning_operations (reprovision_of);
        CREATE INDEX audit_log_target ON audit_log (target, id);
        """,
    ];

    /// <summary>The newest schema version this server knows.</summary>
    public static int Latest => Scripts.Length;

    /// <summary>Brings the schema to <see cref="Latest"/>; throws <see cref="ServerStartException"/> when the database is newer.</summary>
    public static void Apply(NpgsqlDataSource dataSource) => Apply(dataSource, Scripts);

    internal static void Apply(NpgsqlDataSource dataSource, IReadOnlyList<string> scripts)
    {
        using var connection = dataSource.OpenConnection();
        Execute(connection, null, "SELECT pg_advisory_lock($1)", LockKey);
        try
        {
            Execute(connection, null, "CREATE TABLE IF NOT EXISTS enroll_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
            var current = CurrentVersion(connection);
            if (current > scripts.Count)
            {
                throw new ServerStartException(
                    ServerStartProblem.DatabaseSchemaTooNew,
                    string.Create(CultureInfo.InvariantCulture, $"the database {connection.Database} has schema version {current}, newer than this server knows (version {scripts.Count}): a newer Enroll server migrated it; run that version, or restore a backup taken before the upgrade"));
            }

            for (var version = current + 1; version <= scripts.Count; version++)
            {
                using var transaction = connection.BeginTransaction();
                Execute(connection, transaction, scripts[version - 1]);
                Execute(connection, transaction, "INSERT INTO enroll_schema_version (version) VALUES ($1)", version);
                transaction.Commit();
            }
        }
        finally
        {
            Execute(connection, null, "SELECT pg_advisory_unlock($1)", LockKey);
        }
    }

    /// <summary>The schema version the database is at (0 when Enroll never migrated it).</summary>
    public static int CurrentVersion(NpgsqlConnection connection)
    {
        using var command = new NpgsqlCommand("SELECT COALESCE(MAX(version), 0) FROM enroll_schema_version", connection);
        return Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private static void Execute(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, params object[] values)
    {
        using var command = new NpgsqlCommand(sql, connection, transaction);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        command.ExecuteNonQuery();
    }
}
