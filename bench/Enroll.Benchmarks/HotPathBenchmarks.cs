using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Enroll.Protocol.Encryption;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Server;
using Enroll.Server.Registry;
using Enroll.Server.Tokens;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Enroll.Benchmarks;

/// <summary>The request decode: UTF-8 check and source-generated JSON into a <see cref="RegistrationRequest"/>.</summary>
[MemoryDiagnoser]
public class RequestDecodeBenchmarks
{
    private readonly byte[] _payload = Encoding.UTF8.GetBytes("""
        {"client_id":"sensor-000123","device_name":"bench device","org_id":"acme","provisioning_token":"ept_0123456789abcdef0123456789abcdef0123456789ab",
         "metadata":{"model":"bench-1","firmware":"1.0.0","location":{"site":"plant-4","rack":12}},"request_id":"r-42"}
        """);

    [Benchmark]
    public RegistrationRequest? DecodeRegistration()
    {
        EnrollJson.TryDeserialize<RegistrationRequest>(_payload.AsMemory(), EnrollJsonContext.Default.RegistrationRequest, out var request, out _);
        return request;
    }

    [Benchmark]
    public byte[] EncodeResponse() => JsonSerializer.SerializeToUtf8Bytes(
        new RegistrationResponse { DeviceId = "dev_01HZX", JwtToken = "eyJ...", ExpiresAt = DateTimeOffset.UnixEpoch, RequestId = "r-42" },
        EnrollJsonContext.Default.RegistrationResponse);
}

/// <summary>Token signing (ES256) and the full validation path of an access token, including the device lookup.</summary>
[MemoryDiagnoser]
public class TokenBenchmarks : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"enroll-bdn-{Guid.NewGuid():N}");
    private SigningKeyRing _keys = null!;
    private SqliteRegistry _registry = null!;
    private TokenIssuer _issuer = null!;
    private DeviceTokenValidator _validator = null!;
    private DeviceRecord _device = null!;
    private string _token = null!;

    [GlobalSetup]
    public void Setup()
    {
        Directory.CreateDirectory(_folder);
        var options = Options.Create(new EnrollServerOptions());
        _registry = new SqliteRegistry(Path.Combine(_folder, "registry.db"));
        var kek = KeyEncryptionKey.Generate();
        _keys = new SigningKeyRing(_registry, kek, TimeProvider.System);
        var encryption = new EncryptionKeyRing(_registry, kek, TimeProvider.System);
        var published = new PublishedKeys(_keys, encryption, _registry, new InProcessRegistryChanges(NullLogger<InProcessRegistryChanges>.Instance), TimeProvider.System, NullLogger<PublishedKeys>.Instance);
        published.LoadAsync(Path.Combine(_folder, "keys")).GetAwaiter().GetResult();
        _issuer = new TokenIssuer(_keys, TimeProvider.System, options);
        _validator = new DeviceTokenValidator(_keys, published, _registry, TimeProvider.System, options);
        var outcome = _registry.RegisterDeviceAsync(new RegisterDeviceCommand
        {
            OrgId = "acme",
            ClientId = "sensor-1",
            NewDeviceId = "dev_bench",
            Now = DateTimeOffset.UtcNow,
        }).GetAwaiter().GetResult();
        _device = outcome.Device!;
        _token = _issuer.IssueAccessToken(_device).Token;
    }

    [Benchmark]
    public string SignAccessToken() => _issuer.IssueAccessToken(_device).Token;

    [Benchmark]
    public bool ValidateAccessToken() => _validator.ValidateAccessTokenAsync(_token, "dev_bench").GetAwaiter().GetResult().IsValid;

    [GlobalCleanup]
    public void Dispose()
    {
        _registry?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _keys?.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// Registry writes through the group commit (WAL, synchronous=FULL): one writer alone pays a whole commit; 64 writers
/// at once share commits, as registrations do under load.
/// </summary>
[MemoryDiagnoser]
public class RegistryWriteBenchmarks : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"enroll-bdn-{Guid.NewGuid():N}");
    private SqliteRegistry _registry = null!;
    private long _next;

    [GlobalSetup]
    public void Setup()
    {
        Directory.CreateDirectory(_folder);
        _registry = new SqliteRegistry(Path.Combine(_folder, "registry.db"));
    }

    [Benchmark]
    public Task RegisterOneDevice() => Register();

    [Benchmark(OperationsPerInvoke = 64)]
    public Task Register64DevicesConcurrently() => Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Register()));

    private Task<RegisterDeviceOutcome> Register()
    {
        var n = Interlocked.Increment(ref _next);
        return _registry.RegisterDeviceAsync(new RegisterDeviceCommand
        {
            OrgId = "acme",
            ClientId = $"client-{n}",
            NewDeviceId = $"dev_{n:D12}",
            Name = "bench device",
            MetadataJson = """{"model":"bench-1"}""",
            Now = DateTimeOffset.UtcNow,
        });
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _registry?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
        GC.SuppressFinalize(this);
    }
}

/// <summary>End-to-end encryption (JWE ECDH-ES + A256GCM): what a device does to seal, and the server to open and answer.</summary>
[MemoryDiagnoser]
public class EncryptionBenchmarks : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"enroll-bdn-{Guid.NewGuid():N}");
    private readonly byte[] _request = Encoding.UTF8.GetBytes("""{"client_id":"sensor-000123","provisioning_token":"ept_0123456789abcdef0123456789abcdef","metadata":{"model":"bench-1"}}""");
    private readonly byte[] _response = Encoding.UTF8.GetBytes("""{"device_id":"dev_01HZX","jwt_token":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkZXYifQ.c2ln","expires_at":"2026-11-24T00:00:00Z"}""");
    private EncryptionKeyRing _keys = null!;
    private SqliteRegistry _registry = null!;
    private string _sealed = null!;
    private byte[] _responseKey = null!;

    [GlobalSetup]
    public void Setup()
    {
        Directory.CreateDirectory(_folder);
        _registry = new SqliteRegistry(Path.Combine(_folder, "registry.db"));
        _keys = new EncryptionKeyRing(_registry, KeyEncryptionKey.Generate(), TimeProvider.System);
        _registry.AddKeyAsync(_keys.NewKey()).GetAwaiter().GetResult();
        _keys.ReloadAsync().GetAwaiter().GetResult();
        var sealedRequest = JweEnvelope.SealRequest(_request, _keys.Current.Key, _keys.Current.KeyId);
        _sealed = sealedRequest.Compact;
        _responseKey = sealedRequest.ResponseKey;
    }

    [Benchmark]
    public string SealRequest() => JweEnvelope.SealRequest(_request, _keys.Current.Key, _keys.Current.KeyId).Compact;

    [Benchmark]
    public byte[] OpenRequest()
    {
        JweEnvelope.TryOpenRequest(Encoding.ASCII.GetBytes(_sealed), _keys.Find, out var plaintext, out _, out _);
        return plaintext;
    }

    [Benchmark]
    public string SealResponse() => JweEnvelope.SealResponse(_response, _responseKey, "r-42");

    [GlobalCleanup]
    public void Dispose()
    {
        _keys?.Dispose();
        _registry?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
        GC.SuppressFinalize(this);
    }
}
