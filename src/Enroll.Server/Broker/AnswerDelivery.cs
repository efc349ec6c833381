using System.Collections;
using System.Collections.Concurrent;
using MQTTnet;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace Enroll.Server.Broker;

/// <summary>
/// Delivers an answer on <c>enroll/v1/clients/{client ID}/responses</c> straight into that client's session, if it
/// subscribed to a matching filter (with that subscription's QoS, at most the answer's), else not at all — what the
/// broker's general dispatch would do, without checking every connected session's subscriptions for every answer (which
/// makes a storm of thousands of devices quadratic). It remembers each session's filters as the broker grants them.
/// </summary>
internal sealed class AnswerDelivery(MqttServer server)
{
    /// <summary>Remembers a subscription the broker granted, for <see cref="TryDeliverAsync"/>.</summary>
    public static void Subscribed(IDictionary sessionItems, string filter, MqttQualityOfServiceLevel qos)
    {
        if (sessionItems[BrokerSession.Subscriptions] is not ConcurrentDictionary<string, MqttQualityOfServiceLevel> filters)
        {
            filters = new ConcurrentDictionary<string, MqttQualityOfServiceLevel>(StringComparer.Ordinal);
            sessionItems[BrokerSession.Subscriptions] = filters;
        }

        filters[filter] = qos;
    }

    public static void Unsubscribed(InterceptingUnsubscriptionEventArgs e)
    {
        if (e.ProcessUnsubscription && e.SessionItems[BrokerSession.Subscriptions] is ConcurrentDictionary<string, MqttQualityOfServiceLevel> filters)
        {
            filters.TryRemove(e.Topic, out _);
        }
    }

    /// <summary>True when <paramref name="message"/> was for one client's responses (delivered or dropped); false for any other topic.</summary>
    public async Task<bool> TryDeliverAsync(MqttApplicationMessage message)
    {
        if (!TryParseClientResponses(message.Topic, out var clientId))
        {
            return false;
        }

        MqttSessionStatus session;
        try
        {
            session = await server.GetSessionAsync(clientId).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // No session: the client is gone, and nobody else may read its topics.
            return true;
        }

        if (session.Items[BrokerSession.Subscriptions] is not ConcurrentDictionary<string, MqttQualityOfServiceLevel> filters)
        {
            return true;
        }

        MqttQualityOfServiceLevel? granted = null;
        foreach (var (filter, qos) in filters)
        {
            if (MqttTopicFilterComparer.Compare(message.Topic, filter) == MqttTopicFilterCompareResult.IsMatch && (granted is null || qos > granted))
            {
                granted = qos;
            }
        }

        if (granted is { } level)
        {
            message.QualityOfServiceLevel = level < message.QualityOfServiceLevel ? level : message.QualityOfServiceLevel;
            session.TryEnqueueApplicationMessage(message, out _);
        }

        return true;
    }

    /// <summary>The client ID of a <c>enroll/v1/clients/{client ID}/responses</c> topic.</summary>
    public static bool TryParseClientResponses(string topic, out string clientId)
    {
        const string Prefix = "enroll/v1/clients/";
        const string Suffix = "/responses";
        clientId = string.Empty;
        if (topic.Length <= Prefix.Length + Suffix.Length || !topic.StartsWith(Prefix, StringComparison.Ordinal) || !topic.EndsWith(Suffix, StringComparison.Ordinal))
        {
            return false;
        }

        clientId = topic[Prefix.Length..^Suffix.Length];
        return clientId.Length > 0 && !clientId.Contains('/', StringComparison.Ordinal);
    }
}
