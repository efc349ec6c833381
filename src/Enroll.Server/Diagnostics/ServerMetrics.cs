using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Enroll.Server.Diagnostics;

/// <summary>What kind of instrument a declared metric is.</summary>
internal enum InstrumentKind
{
    Counter,
    Histogram,
    Gauge,
}

/// <summary>One metric as declared: its name, kind, unit, description and attributes (docs/observability.md is generated from these).</summary>
internal sealed record InstrumentDeclaration(string Name, InstrumentKind Kind, string Unit, string Description, string Attributes);

/// <summary>
/// Every instrument of the server, declared once: names follow the OpenTelemetry semantic conventions where they exist
/// (<c>messaging.*</c>) and are <c>enroll.server.*</c> otherwise. The meter, the docs table and the Grafana dashboard's
/// check all read <see cref="All"/>.
/// </summary>
internal static class ServerInstruments
{
    public const string MeterName = "Enroll.Server";
    public const string Requests = "enroll.server.requests";
    public const string RequestDuration = "messaging.process.duration";
    public const string MessagesConsumed = "messaging.client.consumed.messages";
    public const string RequestsRejected = "enroll.server.requests.rejected";
    public const string Registrations = "enroll.server.registrations";
    public const string ProvisioningOperations = "enroll.server.provisioning.operations";
    public const string TokenRefreshes = "enroll.server.token.refreshes";
    public const string Connections = "enroll.server.broker.connections";
    public const string ConnectionsRefused = "enroll.server.broker.connections.refused";
    public const string AccessDenied = "enroll.server.broker.access_denied";
    public const string MessagesIngested = "enroll.server.messages.ingested";
    public const string DiskFullRefusals = "enroll.server.registry.disk_full";
    public const string AdminKeyFailures = "enroll.server.http.admin_key_failures";
    public const string OpenConnections = "enroll.server.broker.connections.open";
    public const string ConnectedDevices = "enroll.server.devices.connected";
    public const string TransferChunks = "enroll.server.transfers.chunks";
    public const string Transfers = "enroll.server.transfers";
    public const string TwinPatches = "enroll.server.twin.patches";
    public const string Commands = "enroll.server.commands";
    public const string DesiredPushFailures = "enroll.server.twins.desired_push_failures";
    public const string BrokerAdminErrors = "enroll.server.broker.admin.errors";
    public const string Refusals = "enroll.server.refusals";
    public const string RefusalsDropped = "enroll.server.refusals.dropped";

    public static readonly IReadOnlyList<InstrumentDeclaration> All =
    [
        new(Requests, InstrumentKind.Counter, "{request}", "Requests handled, by topic and outcome", "topic, outcome"),
        new(RequestDuration, InstrumentKind.Histogram, "s", "Time to handle a request, answer included", "messaging.system, messaging.operation.name, messaging.destination.template, enroll.outcome"),
        new(MessagesConsumed, InstrumentKind.Counter, "{message}", "Requests taken from the broker by the request handlers", "messaging.system, messaging.operation.name, messaging.destination.template"),
        new(RequestsRejected, InstrumentKind.Counter, "{request}", "Requests refused, by topic and reason (rate_limited, busy, overloaded, expired, unauthorized, ...)", "topic, reason"),
        new(Registrations, InstrumentKind.Counter, "{registration}", "Registration requests answered, by result (ok or the error code)", "result"),
        new(ProvisioningOperations, InstrumentKind.Counter, "{operation}", "Provisioning requests answered, by step (init, complete) and result (ok or the error code)", "step, result"),
        new(TokenRefreshes, InstrumentKind.Counter, "{refresh}", "Registration Token refreshes answered, by result (ok or the error code)", "result"),
        new(Connections, InstrumentKind.Counter, "{connection}", "Accepted broker connections, by kind", "kind"),
        new(ConnectionsRefused, InstrumentKind.Counter, "{connection}", "Refused broker connections, by reason", "reason"),
        new(AccessDenied, InstrumentKind.Counter, "{operation}", "Publishes and subscriptions refused by access control", "operation"),
        new(MessagesIngested, InstrumentKind.Counter, "{message}", "Device messages ingested, by outcome (stored, duplicate, invalid)", "outcome"),
        new(DiskFullRefusals, InstrumentKind.Counter, "{write}", "Registry writes refused because the disk is full, by operation", "operation"),
        new(AdminKeyFailures, InstrumentKind.Counter, "{request}", "HTTP API requests without a valid admin key, by outcome (unauthorized, rate_limited)", "outcome"),
        new(OpenConnections, InstrumentKind.Gauge, "{connection}", "Broker connections open now (embedded broker)", ""),
        new(ConnectedDevices, InstrumentKind.Gauge, "{device}", "Devices connected to the embedded broker now (services and anonymous connections excluded)", ""),
        new(TransferChunks, InstrumentKind.Counter, "{chunk}", "Chunks of transfers taken, by outcome (stored, duplicate, refused) and, for refusals, reason (invalid, too_large, quota, hash, content, gone, refused_before)", "outcome, reason"),
        new(Transfers, InstrumentKind.Counter, "{transfer}", "Transfers finished, by kind (message, file) and outcome (complete, refused, expired)", "kind, outcome"),
        new(TwinPatches, InstrumentKind.Counter, "{patch}", "Twin patches stored, by side (desired, reported)", "side"),
        new(Commands, InstrumentKind.Counter, "{command}", "Command state changes, by state (queued, sent, succeeded, failed, rejected, expired, canceled)", "state"),
        new(DesiredPushFailures, InstrumentKind.Counter, "{push}", "Desired twin patches committed but not taken by the broker (the device catches up with twin/get)", ""),
        new(BrokerAdminErrors, InstrumentKind.Counter, "{command}", "Dynamic-security commands that failed or went unanswered (Mosquitto)", ""),
        new(Refusals, InstrumentKind.Counter, "{refusal}", "Refusals told to the refusal log (the fleet overview), by kind (rate_limited, token_refused, credential_refused, connection_refused, access_denied, overloaded)", "kind"),
        new(RefusalsDropped, InstrumentKind.Counter, "{refusal}", "Refusals the refusal log dropped, by reason (queue_full: a storm faster than the registry; store_failed: a batch the registry did not take)", "reason"),
    ];

    /// <summary>The declaration of <paramref name="name"/>; throws when it is not declared.</summary>
    public static InstrumentDeclaration Get(string name) => All.Single(i => i.Name == name);
}

/// <summary>The server's metrics, created through <see cref="IMeterFactory"/> from <see cref="ServerInstruments"/>.</summary>
internal sealed class ServerMetrics
{
    private const string MessagingSystem = "mqtt";

    private readonly Meter _meter;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _consumed;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _registrations;
    private readonly Counter<long> _provisioning;
    private readonly Counter<long> _tokenRefreshes;
    private readonly Counter<long> _connections;
    private readonly Counter<long> _connectionsRefused;
    private readonly Counter<long> _accessDenied;
    private readonly Counter<long> _ingested;
    private readonly Counter<long> _diskFull;
    private readonly Counter<long> _adminKeyFailures;
    private readonly Counter<long> _chunks;
    private readonly Counter<long> _transfers;
    private readonly Counter<long> _twinPatches;
    private readonly Counter<long> _commands;
    private readonly List<Func<int>> _deviceSources = [];
    private int _open;

    public ServerMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(ServerInstruments.MeterName);
        _requests = Counter(ServerInstruments.Requests);
        var duration = ServerInstruments.Get(ServerInstruments.RequestDuration);
        _duration = _meter.CreateHistogram<double>(duration.Name, duration.Unit, duration.Description);
        _consumed = Counter(ServerInstruments.MessagesConsumed);
        _rejected = Counter(ServerInstruments.RequestsRejected);
        _registrations = Counter(ServerInstruments.Registrations);
        _provisioning = Counter(ServerInstruments.ProvisioningOperations);
        _tokenRefreshes = Counter(ServerInstruments.TokenRefreshes);
        _connections = Counter(ServerInstruments.Connections);
        _connectionsRefused = Counter(ServerInstruments.ConnectionsRefused);
        _accessDenied = Counter(ServerInstruments.AccessDenied);
        _ingested = Counter(ServerInstruments.MessagesIngested);
        _diskFull = Counter(ServerInstruments.DiskFullRefusals);
        _adminKeyFailures = Counter(ServerInstruments.AdminKeyFailures);
        _chunks = Counter(ServerInstruments.TransferChunks);
        _transfers = Counter(ServerInstruments.Transfers);
        _twinPatches = Counter(ServerInstruments.TwinPatches);
        _commands = Counter(ServerInstruments.Commands);
        var open = ServerInstruments.Get(ServerInstruments.OpenConnections);
        _meter.CreateObservableGauge(open.Name, () => Volatile.Read(ref _open), open.Unit, open.Description);
        var devices = ServerInstruments.Get(ServerInstruments.ConnectedDevices);
        _meter.CreateObservableGauge(devices.Name, ConnectedDevices, devices.Unit, devices.Description);
    }

    /// <summary>A counter declared in <see cref="ServerInstruments.All"/> (also for the instruments other classes own).</summary>
    public Counter<long> Counter(string name)
    {
        var declared = ServerInstruments.Get(name);
        return _meter.CreateCounter<long>(declared.Name, declared.Unit, declared.Description);
    }

    public void RequestHandled(string topic, string outcome, TimeSpan duration)
    {
        var declared = Protocol.Requests.EnrollRequests.TryFind(topic, out var request) ? request : null;
        var template = declared?.Topic ?? "other";
        _requests.Add(1, new TagList { { "topic", template }, { "outcome", outcome } });
        var messaging = new TagList
        {
            { "messaging.system", MessagingSystem },
            { "messaging.operation.name", "process" },
            { "messaging.destination.template", template },
        };
        _consumed.Add(1, messaging);
        messaging.Add("enroll.outcome", outcome);
        _duration.Record(duration.TotalSeconds, messaging);
        switch (declared?.Name)
        {
            case "registration":
                _registrations.Add(1, new KeyValuePair<string, object?>("result", outcome));
                break;
            case "provisioning_init":
                _provisioning.Add(1, new TagList { { "step", "init" }, { "result", outcome } });
                break;
            case "provisioning_complete":
                _provisioning.Add(1, new TagList { { "step", "complete" }, { "result", outcome } });
                break;
            case "token_refresh":
                _tokenRefreshes.Add(1, new KeyValuePair<string, object?>("result", outcome));
                break;
            case "twin_report" when outcome == "ok":
                TwinPatched("reported");
                break;
        }
    }

    public void RequestRejected(string topic, string reason) =>
        _rejected.Add(1, new TagList { { "topic", TopicTag(topic) }, { "reason", reason } });

    /// <summary>
    /// The declared topic of the request type published to <paramref name="topic"/> (a device-scoped request's template,
    /// so the Device ID never becomes a metric tag), or <c>other</c>.
    /// </summary>
    private static string TopicTag(string topic) =>
        Protocol.Requests.EnrollRequests.TryFind(topic, out var request) ? request.Topic : "other";

    public void ConnectionAccepted(string kind) => _connections.Add(1, new KeyValuePair<string, object?>("kind", kind));

    public void ConnectionRefused(string reason) => _connectionsRefused.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void MessageIngested(string outcome) => _ingested.Add(1, new KeyValuePair<string, object?>("outcome", outcome));

    public void ChunkTaken(string outcome, string? reason = null) =>
        _chunks.Add(1, reason is null ? new TagList { { "outcome", outcome } } : new TagList { { "outcome", outcome }, { "reason", reason } });

    public void TransferFinished(string kind, string outcome) =>
        _transfers.Add(1, new TagList { { "kind", kind }, { "outcome", outcome } });

    /// <summary>A twin patch stored: <paramref name="side"/> is <c>desired</c> or <c>reported</c>.</summary>
    public void TwinPatched(string side, int count = 1) => _twinPatches.Add(count, new KeyValuePair<string, object?>("side", side));

    /// <summary>A command reached <paramref name="state"/> (queued, sent, succeeded, failed, rejected, expired, canceled).</summary>
    public void CommandState(string state, int count = 1) => _commands.Add(count, new KeyValuePair<string, object?>("state", state));

    public void DiskFullRefusal(string operation) => _diskFull.Add(1, new KeyValuePair<string, object?>("operation", operation));

    public void AdminKeyFailure(string outcome) => _adminKeyFailures.Add(1, new KeyValuePair<string, object?>("outcome", outcome));

    /// <summary>Broker connections open now (accepted and not yet closed).</summary>
    public int OpenConnections => Volatile.Read(ref _open);

    public void ConnectionOpened() => Interlocked.Increment(ref _open);

    public void ConnectionClosed() => Interlocked.Decrement(ref _open);

    /// <summary>Adds a source of the connected-devices gauge (each broker listener counts its own device connections).</summary>
    public void ObserveConnectedDevices(Func<int> count)
    {
        lock (_deviceSources)
        {
            _deviceSources.Add(count);
        }
    }

    private int ConnectedDevices()
    {
        lock (_deviceSources)
        {
            return _deviceSources.Sum(source => source());
        }
    }

    public void AccessDenied(string operation) => _accessDenied.Add(1, new KeyValuePair<string, object?>("operation", operation));
}
