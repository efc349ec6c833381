using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Enroll.Server.Diagnostics;

/// <summary>Instrument names of the server, OpenTelemetry style.</summary>
internal static class ServerInstruments
{
    public const string MeterName = "Enroll.Server";
    public const string Requests = "enroll.server.requests";
    public const string RequestDuration = "enroll.server.request.duration";
    public const string RequestsRejected = "enroll.server.requests.rejected";
    public const string Connections = "enroll.server.broker.connections";
    public const string ConnectionsRefused = "enroll.server.broker.connections.refused";
    public const string AccessDenied = "enroll.server.broker.access_denied";
    public const string MessagesIngested = "enroll.server.messages.ingested";
    public const string DiskFullRefusals = "enroll.server.registry.disk_full";
    public const string AdminKeyFailures = "enroll.server.http.admin_key_failures";
    public const string OpenConnections = "enroll.server.broker.connections.open";
    public const string TransferChunks = "enroll.server.transfers.chunks";
    public const string Transfers = "enroll.server.transfers";
}

/// <summary>The server's metrics, created through <see cref="IMeterFactory"/>.</summary>
internal sealed class ServerMetrics
{
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _connections;
    private readonly Counter<long> _connectionsRefused;
    private readonly Counter<long> _accessDenied;
    private readonly Counter<long> _ingested;
    private readonly Counter<long> _diskFull;
    private readonly Counter<long> _adminKeyFailures;
    private readonly Counter<long> _chunks;
    private readonly Counter<long> _transfers;
    private int _open;

    public ServerMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(ServerInstruments.MeterName);
        _requests = meter.CreateCounter<long>(ServerInstruments.Requests, "{request}", "Requests handled, by topic and outcome");
        _duration = meter.CreateHistogram<double>(ServerInstruments.RequestDuration, "s", "Time to handle a request, answer included");
        _rejected = meter.CreateCounter<long>(ServerInstruments.RequestsRejected, "{request}", "Requests refused, by topic and reason");
        _connections = meter.CreateCounter<long>(ServerInstruments.Connections, "{connection}", "Accepted broker connections, by kind");
        _connectionsRefused = meter.CreateCounter<long>(ServerInstruments.ConnectionsRefused, "{connection}", "Refused broker connections, by reason");
        _accessDenied = meter.CreateCounter<long>(ServerInstruments.AccessDenied, "{operation}", "Publishes and subscriptions refused by access control");
        _ingested = meter.CreateCounter<long>(ServerInstruments.MessagesIngested, "{message}", "Device messages ingested, by outcome (stored, duplicate, invalid)");
        _diskFull = meter.CreateCounter<long>(ServerInstruments.DiskFullRefusals, "{write}", "Registry writes refused because the disk is full, by operation");
        _adminKeyFailures = meter.CreateCounter<long>(ServerInstruments.AdminKeyFailures, "{request}", "HTTP API requests without a valid admin key, by outcome (unauthorized, rate_limited)");
        _chunks = meter.CreateCounter<long>(ServerInstruments.TransferChunks, "{chunk}", "Chunks of transfers taken, by outcome (stored, duplicate, refused) and, for refusals, reason (invalid, too_large, quota, hash, content, gone, refused_before)");
        _transfers = meter.CreateCounter<long>(ServerInstruments.Transfers, "{transfer}", "Transfers finished, by kind (message, file) and outcome (complete, refused, expired)");
        meter.CreateObservableGauge(ServerInstruments.OpenConnections, () => Volatile.Read(ref _open), "{connection}", "Broker connections open now");
    }

    public void RequestHandled(string topic, string outcome, TimeSpan duration)
    {
        var tags = new TagList { { "topic", TopicTag(topic) }, { "outcome", outcome } };
        _requests.Add(1, tags);
        _duration.Record(duration.TotalSeconds, tags);
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

    public void DiskFullRefusal(string operation) => _diskFull.Add(1, new KeyValuePair<string, object?>("operation", operation));

    public void AdminKeyFailure(string outcome) => _adminKeyFailures.Add(1, new KeyValuePair<string, object?>("outcome", outcome));

    /// <summary>Broker connections open now (accepted and not yet closed).</summary>
    public int OpenConnections => Volatile.Read(ref _open);

    public void ConnectionOpened() => Interlocked.Increment(ref _open);

    public void ConnectionClosed() => Interlocked.Decrement(ref _open);

    public void AccessDenied(string operation) => _accessDenied.Add(1, new KeyValuePair<string, object?>("operation", operation));
}
