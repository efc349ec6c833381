using Enroll.Testing;

namespace Enroll.Server.Tests.Registry;

/// <summary>The test classes that share one real PostgreSQL server per test run; each takes its own database.</summary>
[CollectionDefinition(Name)]
public sealed class PostgresGroup : ICollectionFixture<PostgresServer>
{
    public const string Name = "postgres";
}
