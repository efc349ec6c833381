using Enroll.Server.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Enroll.Server.Tokens;

/// <summary>
/// Loads the server keys from the registry (<see cref="PublishedKeys.LoadAsync"/>) when the host starts, before the
/// broker and the request handlers start (it is registered before them), so nothing signs or publishes with no keys.
/// </summary>
internal sealed class ServerKeysStartup(PublishedKeys keys, KeyEncryptionKey kek, IOptions<EnrollServerOptions> options, ILogger<ServerKeysStartup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (kek.Created)
        {
            Log.KeyEncryptionKeyCreated(logger, kek.Id, kek.Source);
        }
        else
        {
            Log.KeyEncryptionKeyInUse(logger, kek.Id, kek.Source);
        }

        return keys.LoadAsync(Path.Combine(Path.GetFullPath(options.Value.DataDirectory), "keys"), cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
