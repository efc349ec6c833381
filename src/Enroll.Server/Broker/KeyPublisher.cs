using System.Text.Json;
using Enroll.Protocol.Json;
using Enroll.Protocol.Topics;
using Enroll.Server.Diagnostics;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Broker;

/// <summary>Keeps the server's public key set retained on <see cref="EnrollTopics.ServerKeys"/>, through either transport.</summary>
internal sealed class KeyPublisher(PublishedKeys keys, IResponsePublisher transport, ILogger logger)
{
    public async Task PublishAsync()
    {
        var keySet = keys.KeySet;
        var payload = JsonSerializer.SerializeToUtf8Bytes(keySet, EnrollJsonContext.Default.ServerKeySet);
        await transport.PublishAsync(EnrollTopics.ServerKeys, payload, null, retain: true, CancellationToken.None).ConfigureAwait(false);
        Log.KeysPublished(logger, keySet.Keys.Count, EnrollTopics.ServerKeys);
    }
}
