using Enroll.Server.Registry;
using Microsoft.Extensions.Time.Testing;

namespace Enroll.Server.Tests.Registry.Contract;

/// <summary>
/// What every registry store guarantees, stated as tests against <see cref="IRegistry"/> only: a store is held to the
/// contract by a subclass that creates an empty store (see <see cref="SqliteRegistryContractTests"/>). Nothing here
/// knows how a store keeps its data; time comes from a <see cref="FakeTimeProvider"/> and timestamps are whole
/// milliseconds, which every store keeps exactly. The partial files hold the facts by aggregate.
/// </summary>
public abstract partial class RegistryContractTests : IAsyncLifetime
{
    /// <summary>An instant the facts start from.</summary>
    protected static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private IRegistry? _registry;

    /// <summary>The clock the facts advance; stores never read the wall clock, the facts pass every instant.</summary>
    protected FakeTimeProvider Clock { get; } = new(T0);

    protected DateTimeOffset Now => Clock.GetUtcNow();

    private protected IRegistry Registry => _registry ?? throw new InvalidOperationException("the store is created in InitializeAsync");

    /// <summary>Creates a new, empty store, ready for use (migrated).</summary>
    private protected abstract Task<IRegistry> CreateRegistryAsync();

    /// <summary>Removes whatever <see cref="CreateRegistryAsync"/> created, after the store is disposed.</summary>
    protected virtual Task DeleteRegistryAsync() => Task.CompletedTask;

    public async Task InitializeAsync() => _registry = await CreateRegistryAsync();

    public async Task DisposeAsync()
    {
        if (_registry is not null)
        {
            await _registry.DisposeAsync();
        }

        await DeleteRegistryAsync();
    }

    // ----- builders shared by the facts -----

    private int _ids;

    /// <summary>A unique ID with a readable prefix.</summary>
    protected string NewId(string prefix) => $"{prefix}-{Interlocked.Increment(ref _ids):D4}";

    private protected async Task<ProvisioningTokenRecord> CreateTokenAsync(int? maxUses = null, string orgId = "acme", bool autoApprove = true, DateTimeOffset? createdAt = null)
    {
        var token = new ProvisioningTokenRecord
        {
            Id = NewId("pt"),
            SecretHash = [1, 2, 3, (byte)_ids],
            OrgId = orgId,
            AutoApprove = autoApprove,
            MaxUses = maxUses,
            CreatedAt = createdAt ?? Now,
        };
        await Registry.CreateProvisioningTokenAsync(token);
        return token;
    }

    private protected RegisterDeviceCommand Register(string clientId, ProvisioningTokenRecord? token = null, string orgId = "acme", string? deviceId = null, string? name = null) => new()
    {
        OrgId = orgId,
        ClientId = clientId,
        DeviceId = deviceId,
        NewDeviceId = NewId("dev"),
        Name = name,
        ProvisioningTokenId = token?.Id,
        Now = Now,
    };

    /// <summary>A Registration Token record as the issuer makes it: whole-second <c>iat</c>, for one device.</summary>
    private protected RegistrationTokenRecord SignedFor(string deviceId, DateTimeOffset? issuedAt = null)
    {
        var at = DateTimeOffset.FromUnixTimeSeconds((issuedAt ?? Now).ToUnixTimeSeconds());
        return new RegistrationTokenRecord { TokenId = NewId("jti"), DeviceId = deviceId, IssuedAt = at, ExpiresAt = at.AddDays(90) };
    }

    private protected async Task<DeviceRecord> CreateDeviceAsync(string clientId, ProvisioningTokenRecord? token = null, string orgId = "acme")
    {
        var outcome = await Registry.RegisterDeviceAsync(Register(clientId, token, orgId));
        Assert.Equal(RegisterDeviceResult.Created, outcome.Result);
        return outcome.Device!;
    }

    private protected OperationRecord Operation(ProvisioningTokenRecord token, string clientId, string? desiredDeviceId = null, string? reprovisionOf = null, TimeSpan? lifetime = null) => new()
    {
        OperationId = NewId("op"),
        OrgId = token.OrgId,
        ClientId = clientId,
        ProvisioningTokenId = token.Id,
        DesiredDeviceId = desiredDeviceId,
        ReprovisionOf = reprovisionOf,
        DeviceName = "sensor",
        Status = Protocol.Messages.OperationStatus.Pending,
        CreatedAt = Now,
        ExpiresAt = Now + (lifetime ?? TimeSpan.FromHours(1)),
    };

    private protected IngestedMessage Message(string deviceId, string messageId, string stream = "telemetry", byte[]? payload = null) => new()
    {
        DeviceId = deviceId,
        MessageId = messageId,
        Stream = stream,
        ReceivedAt = Now,
        Payload = payload ?? [7, 8, 9],
    };

    /// <summary>Runs <paramref name="count"/> calls at once, each from the thread pool, as concurrent requests do.</summary>
    protected static Task<T[]> ConcurrentlyAsync<T>(int count, Func<int, Task<T>> call) =>
        Task.WhenAll(Enumerable.Range(0, count).Select(i => Task.Run(() => call(i))));
}
