using Enroll.Server.Registry;
using Enroll.Testing;

namespace Enroll.Server.Tests.Registry.Contract;

/// <summary>The registry contract against <see cref="PostgresRegistry"/> on a real PostgreSQL, in a fresh database.</summary>
[Collection(PostgresGroup.Name)]
public sealed class PostgresRegistryContractTests(PostgresServer server) : RegistryContractTests
{
    private string? _database;

    private protected override async Task<IRegistry> CreateRegistryAsync()
    {
        _database = await server.CreateDatabaseAsync("contract");
        return new PostgresRegistry(_database);
    }

    protected override async Task DeleteRegistryAsync()
    {
        if (_database is not null)
        {
            await server.DropDatabaseAsync(_database);
        }
    }
}
