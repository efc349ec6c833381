namespace Enroll.Agent.Tests.Infrastructure;

/// <summary>
/// The tests that publish the agent or build its package run one at a time: two publishes of one project at once would
/// restore into the same obj/ folders.
/// </summary>
[CollectionDefinition(Name)]
public sealed class SerialBuilds
{
    public const string Name = "agent builds";
}
