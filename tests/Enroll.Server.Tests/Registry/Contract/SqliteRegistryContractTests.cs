using Enroll.Server.Registry;
using Enroll.Testing;

namespace Enroll.Server.Tests.Registry.Contract;

/// <summary>The registry contract against <see cref="SqliteRegistry"/> on a real file in a temporary folder.</summary>
public sealed class SqliteRegistryContractTests : RegistryContractTests
{
    private readonly TempDirectory _folder = new("enroll-registry-contract");

    private protected override Task<IRegistry> CreateRegistryAsync() =>
        Task.FromResult<IRegistry>(new SqliteRegistry(_folder.Combine(SqliteRegistry.FileName)));

    protected override Task DeleteRegistryAsync()
    {
        _folder.Dispose();
        return Task.CompletedTask;
    }
}
