using System.Reflection;
using Microsoft.Extensions.Logging;

namespace Enroll.Server.Tests.Architecture;

/// <summary>Every log line of the server has its own event ID, so an operator's filter or alert on an ID means one thing.</summary>
public sealed class LogEventIdTests
{
    [Fact]
    public void EveryLogMessageOfTheServer_HasAnEventIdOfItsOwn()
    {
        var messages = typeof(EnrollServerOptions).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            .Select(m => (Method: $"{m.DeclaringType!.FullName}.{m.Name}", Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(m => m.Attribute is not null)
            .ToList();

        var shared = messages.GroupBy(m => m.Attribute!.EventId).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Method))}").ToList();

        Assert.True(messages.Count > 50, $"found only {messages.Count} log messages; is the reflection still looking at the right assembly?");
        Assert.True(shared.Count == 0, "event IDs used more than once: " + string.Join("; ", shared));
    }
}
