using System.Security.Cryptography;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Tests.Security;

/// <summary>Reaches the running server's current encryption key (public part) for tests that craft envelopes by hand.</summary>
internal static class ServerEncryptionKey
{
    public static (string KeyId, ECDiffieHellman Key) Of(TestServer server)
    {
        var current = server.Host.Services.GetRequiredService<EncryptionKeyRing>().Current;
        var copy = ECDiffieHellman.Create(current.Key.ExportParameters(false));
        return (current.KeyId, copy);
    }
}
