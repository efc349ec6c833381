using Enroll.Server.Registry;
using Enroll.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Enroll.Server.Tests.Registry;

/// <summary>The registry's registration: one store behind every aggregate, and a replacement store takes them all.</summary>
public sealed class RegistryServicesTests : IDisposable
{
    private readonly TempDirectory _folder = new("enroll-registry-services");

    [Fact]
    public async Task EveryAggregate_IsTheOneSqliteStore()
    {
        await using var provider = new ServiceCollection().AddEnrollRegistry(new EnrollServerOptions(), _folder.Path).BuildServiceProvider();

        var store = provider.GetRequiredService<IRegistry>();

        Assert.IsType<SqliteRegistry>(store);
        Assert.Same(store, provider.GetRequiredService<IProvisioningTokenStore>());
        Assert.Same(store, provider.GetRequiredService<IDeviceStore>());
        Assert.Same(store, provider.GetRequiredService<IOperationStore>());
        Assert.Same(store, provider.GetRequiredService<IMessageStore>());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AStoreRegisteredBeforeOrAfter_ReplacesSqliteForEveryAggregate(bool before)
    {
        var replacement = new SqliteRegistry(_folder.Combine("replacement.db"));
        var services = new ServiceCollection();
        if (before)
        {
            services.AddSingleton<IRegistry>(replacement);
        }

        services.AddEnrollRegistry(new EnrollServerOptions(), _folder.Path);
        if (!before)
        {
            services.AddSingleton<IRegistry>(replacement);
        }

        await using (var provider = services.BuildServiceProvider())
        {
            Assert.Same(replacement, provider.GetRequiredService<IRegistry>());
            Assert.Same(replacement, provider.GetRequiredService<IProvisioningTokenStore>());
            Assert.Same(replacement, provider.GetRequiredService<IDeviceStore>());
            Assert.Same(replacement, provider.GetRequiredService<IOperationStore>());
            Assert.Same(replacement, provider.GetRequiredService<IMessageStore>());
        }

        Assert.False(File.Exists(_folder.Combine(SqliteRegistry.FileName)));
        await replacement.DisposeAsync();
    }

    public void Dispose() => _folder.Dispose();
}
