using System.CommandLine;
using Enroll.Server;

namespace Enroll.Cli.Commands;

/// <summary>The console API's <c>enroll server</c> flags (issue 15).</summary>
internal static partial class ServerFlags
{
    private static readonly Option<int> MaxEventStreams = new("--max-event-streams")
    {
        Description = "Most GET /api/events streams open at once; one more gets 503",
        DefaultValueFactory = _ => 100,
    };

    static partial void AddConsoleFlags(Command command) => command.Options.Add(MaxEventStreams);

    static partial void ApplyConsoleFlags(ParseResult parse, EnrollServerOptions options) => options.MaxEventStreams = parse.GetValue(MaxEventStreams);
}
