using System.CommandLine;
using Enroll.Cli.Infrastructure;
using Enroll.Server;

namespace Enroll.Cli.Commands;

/// <summary>The fleet overview's <c>enroll server</c> flags (issue 15).</summary>
internal static partial class ServerFlags
{
    private const string RefusalRetentionFlag = "--refusal-retention";

    static partial void AddOverviewFlags(Command command) =>
        command.Options.Add(CliOptions.Duration(RefusalRetentionFlag, "How long the refusal log (GET /api/refusals, the console's overview) keeps a refusal", "24h"));

    static partial void ApplyOverviewFlags(ParseResult parse, EnrollServerOptions options) =>
        options.RefusalRetention = Durations.Parse(parse.GetValue<string>(RefusalRetentionFlag)!);
}
