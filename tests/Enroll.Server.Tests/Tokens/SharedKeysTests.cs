using System.Diagnostics;
using System.Text.Json;
using Enroll.Protocol.Topics;
using Enroll.Server.Registry;
using Enroll.Server.Tests.Registry;
using Enroll.Server.Tokens;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Xunit.Abstractions;

namespace Enroll.Server.Tests.Tokens;

/// <summary>
/// Two in-process servers (each with its own embedded broker and data folder) on one PostgreSQL database with one KEK:
/// "every instance the same" for keys — the same retained key set, tokens of either valid on the other, a rotation on
/// one seen by the other within a second.
/// </summary>
[Collection(PostgresGroup.Name)]
public sealed class SharedKeysTests(PostgresServer postgres, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan WithinASecond = TimeSpan.FromSeconds(1);
    private readonly TempDirectory _folder = new("enroll-shared-keys");
    private string _database = "";
    private string _kek = "";

    public async Task InitializeAsync()
    {
        _database = await postgres.CreateDatabaseAsync("keys");
        _kek = TestKeyEncryptionKeys.Write(_folder.Combine("kek"));
    }

    public async Task DisposeAsync()
    {
        await postgres.DropDatabaseAsync(_database);
        _folder.Dispose();
    }

    [Fact]
    public async Task TwoInstancesStartingTogetherOnAnEmptyDatabase_CreateOneKeySet_AndBothPublishIt()
    {
        var (a, b) = await StartPairAsync();
        await using (a)
        await using (b)
        {
            Assert.True(Created(a) ^ Created(b), "exactly one instance created the keys");
            var store = a.Host.Services.GetRequiredService<IKeyStore>();
            Assert.Single(await store.ListKeysAsync(KeyUse.Signing));
            Assert.Single(await store.ListKeysAsync(KeyUse.Encryption));

            var onA = await RetainedKeyIdsAsync(a);
            var onB = await RetainedKeyIdsAsync(b);
            Assert.Equal(2, onA.Count);
            Assert.Equal(onA, onB);
        }
    }

    [Fact]
    public async Task ATokenIssuedByA_ValidatesOnB()
    {
        var (a, b) = await StartPairAsync();
        await using (a)
        await using (b)
        {
            var token = await RegisterAsync(a, "shared-1");

            var check = await Validator(b).ValidateAccessTokenAsync(token, null);

            Assert.True(check.IsValid, check.Failure);
        }
    }

    [Fact]
    public async Task RotatingThroughA_BRepublishesTheSameKeySetWithinASecond_AndTokensOfTheNewKeyValidateOnB()
    {
        var (a, b) = await StartPairAsync();
        await using (a)
        await using (b)
        {
            await using var watcher = await RawMqttClient.ConnectAsync(b.MqttEndpoint, "keys-watcher");
            await watcher.SubscribeAsync(EnrollTopics.ServerKeys);
            var before = KeyIds(await watcher.ReceiveAsync(TimeSpan.FromSeconds(10)));

            var clock = Stopwatch.StartNew();
            using (var rotated = await a.Http.PostAsync("/api/keys/rotate", null))
            {
                rotated.EnsureSuccessStatusCode();
            }

            var expected = KeyIds(a.Host.Services.GetRequiredService<PublishedKeys>().KeySet);
            Assert.NotEqual(before, expected);
            var published = await NextKeySetAsync(watcher, expected, WithinASecond);
            output.WriteLine($"B republished the rotated key set {clock.ElapsedMilliseconds} ms after A's rotation answered");
            Assert.Equal(expected, published);

            var newKey = a.Host.Services.GetRequiredService<SigningKeyRing>().Current.KeyId;
            var token = await RegisterAsync(a, "shared-2");
            Assert.Equal(newKey, new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(token).Kid);
            var check = await Validator(b).ValidateAccessTokenAsync(token, null);
            Assert.True(check.IsValid, check.Failure);
        }
    }

    [Fact]
    public async Task ARotationBWasNotToldOf_ATokenOfTheNewKey_StillValidatesOnB_ByReloadingOnTheUnknownKeyId()
    {
        var (a, b) = await StartPairAsync();
        await using (a)
        await using (b)
        {
            var device = await RegisterDeviceAsync(a, "shared-3");

            // A rotation straight through the store, announced to no one (as if the notification were lost).
            var signing = a.Host.Services.GetRequiredService<SigningKeyRing>();
            var encryption = a.Host.Services.GetRequiredService<EncryptionKeyRing>();
            await a.Host.Services.GetRequiredService<IKeyStore>().RotateKeysAsync([signing.NewKey(), encryption.NewKey()], SigningKeyRing.KeysKept);
            await signing.ReloadAsync();
            var token = a.Host.Services.GetRequiredService<TokenIssuer>().IssueAccessToken(device).Token;
            Assert.Null(b.Host.Services.GetRequiredService<SigningKeyRing>().Find(signing.Current.KeyId));

            var check = await Validator(b).ValidateAccessTokenAsync(token, null);

            Assert.True(check.IsValid, check.Failure);
            Assert.NotNull(b.Host.Services.GetRequiredService<SigningKeyRing>().Find(signing.Current.KeyId));
        }
    }

    [Fact]
    public async Task WhenBsListenerConnectionIsCut_BListensAgain_AndCatchesUpWithARotationMadeMeanwhile()
    {
        var (a, b) = await StartPairAsync();
        await using (a)
        await using (b)
        {
            var bKeys = b.Host.Services.GetRequiredService<PublishedKeys>();

            // Cut every listening session (A's and B's), then rotate while they reconnect.
            Assert.True(await TerminateListenersAsync() >= 2);
            await a.Host.Services.GetRequiredService<PublishedKeys>().RotateAsync();
            var expected = KeyIds(a.Host.Services.GetRequiredService<PublishedKeys>().KeySet);

            await Eventually.ReturnsAsync(() => Task.FromResult(KeyIds(bKeys.KeySet)), ids => ids.SequenceEqual(expected), TimeSpan.FromSeconds(15), "B reloading the keys after its listener reconnected");
            await Eventually.ReturnsAsync(ListenerCountAsync, count => count >= 2, TimeSpan.FromSeconds(15), "both listeners listening again");
        }
    }

    [Fact]
    public async Task TwoInstancesImportingTheSameOldKeyFiles_StoreEachKeyOnce()
    {
        var (keyId, files) = WriteOldSigningKey();
        foreach (var data in new[] { "a", "b" })
        {
            var keys = Enroll.Shared.Files.OwnerOnlyFiles.EnsureDirectory(_folder.Combine(data, "keys"));
            foreach (var (name, text) in files)
            {
                Enroll.Shared.Files.OwnerOnlyFiles.WriteAllText(Path.Combine(keys, name), text);
            }
        }

        var (a, b) = await StartPairAsync();
        await using (a)
        await using (b)
        {
            var stored = await a.Host.Services.GetRequiredService<IKeyStore>().ListKeysAsync(KeyUse.Signing);
            Assert.Equal([keyId], stored.Select(k => k.KeyId));
            Assert.Equal(keyId, b.Host.Services.GetRequiredService<SigningKeyRing>().Current.KeyId);
            Assert.Equal(await RetainedKeyIdsAsync(a), await RetainedKeyIdsAsync(b));
        }
    }

    [Fact]
    public async Task AnInstanceGivenNoKek_RefusesToStart_SayingHowToMakeOne()
    {
        // Not through TestServer, which gives servers on a database the run's shared KEK.
        var options = new EnrollServerOptions { Database = _database, DataDirectory = _folder.Combine("alone"), MqttPort = 0, HttpPort = 0 };

        var refused = await Assert.ThrowsAsync<ServerStartException>(() => EnrollServerHost.StartAsync(options));

        Assert.Equal(ServerStartProblem.KeyEncryptionKeyRequired, refused.Problem);
        Assert.Contains("head -c 32 /dev/urandom | base64", refused.Message, StringComparison.Ordinal);
    }

    private async Task<(TestServer A, TestServer B)> StartPairAsync()
    {
        var starting = new[] { "a", "b" }.Select(name => TestServer.StartAsync(output, o =>
        {
            o.Database = _database;
            o.KeyEncryptionKeyFile = _kek;
        }, dataDirectory: _folder.Combine(name))).ToList();
        var servers = await Task.WhenAll(starting);
        foreach (var server in servers)
        {
            // After it, every rotation announced reaches the instance.
            await server.Host.Services.GetRequiredService<PostgresRegistryChanges>().Listening.WaitAsync(TimeSpan.FromSeconds(30));
        }

        return (servers[0], servers[1]);
    }

    private static bool Created(TestServer server) => server.Host.Services.GetRequiredService<PublishedKeys>().Created;

    private static DeviceTokenValidator Validator(TestServer server) => server.Host.Services.GetRequiredService<DeviceTokenValidator>();

    private static async Task<string> RegisterAsync(TestServer server, string clientId)
    {
        var token = await server.CreateTokenAsync(autoApprove: true);
        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, clientId);
        await client.SubscribeAsync(EnrollTopics.ClientResponses(clientId));
        await client.PublishAsync(EnrollTopics.Register, $$"""{"client_id":"{{clientId}}","provisioning_token":"{{token.Token}}"}""", EnrollTopics.ClientResponses(clientId), [1]);
        using var answer = JsonDocument.Parse(RawMqttClient.Text(await client.ReceiveAsync(TimeSpan.FromSeconds(30))));
        return answer.RootElement.TryGetProperty("jwt_token", out var jwt) ? jwt.GetString()! : throw new InvalidOperationException(answer.RootElement.GetRawText());
    }

    private static async Task<DeviceRecord> RegisterDeviceAsync(TestServer server, string clientId)
    {
        var token = await RegisterAsync(server, clientId);
        var deviceId = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(token).Subject;
        return (await server.Host.Services.GetRequiredService<IDeviceStore>().FindDeviceAsync(deviceId))!;
    }

    private static async Task<List<string>> RetainedKeyIdsAsync(TestServer server)
    {
        await using var client = await RawMqttClient.ConnectAsync(server.MqttEndpoint, "keys-reader-" + server.MqttPort);
        await client.SubscribeAsync(EnrollTopics.ServerKeys);
        return KeyIds(await client.ReceiveAsync(TimeSpan.FromSeconds(10)));
    }

    /// <summary>The key set messages <paramref name="client"/> receives until one lists <paramref name="expected"/>, within <paramref name="timeout"/>.</summary>
    private static async Task<List<string>> NextKeySetAsync(RawMqttClient client, List<string> expected, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var remaining = timeout - deadline.Elapsed;
            if (remaining <= TimeSpan.Zero)
            {
                throw new TimeoutException($"no key set {string.Join(",", expected)} within {timeout}");
            }

            var ids = KeyIds(await client.ReceiveAsync(remaining));
            if (ids.SequenceEqual(expected))
            {
                return ids;
            }
        }
    }

    private static List<string> KeyIds(MQTTnet.MqttApplicationMessage message)
    {
        using var document = JsonDocument.Parse(RawMqttClient.Text(message));
        return document.RootElement.GetProperty("keys").EnumerateArray().Select(k => $"{k.GetProperty("use").GetString()}:{k.GetProperty("kid").GetString()}").ToList();
    }

    private static List<string> KeyIds(Enroll.Protocol.Messages.ServerKeySet set) => set.Keys.Select(k => $"{k.Use}:{k.Kid}").ToList();

    private async Task<int> TerminateListenersAsync()
    {
        await using var connection = new NpgsqlConnection(_database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()) AS cut", connection);
        return Convert.ToInt32(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private async Task<int> ListenerCountAsync()
    {
        await using var connection = new NpgsqlConnection(_database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'", connection);
        return Convert.ToInt32(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static (string KeyId, List<(string Name, string Text)> Files) WriteOldSigningKey()
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var keyId = KeyFiles.Thumbprint(key.ExportParameters(false));
        using var scratch = new TempDirectory("enroll-old-keys");
        var file = KeyFiles.Write(scratch.Path, "signing-", new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), keyId, key.ExportPkcs8PrivateKeyPem());
        return (keyId, [(Path.GetFileName(file), File.ReadAllText(file))]);
    }
}
