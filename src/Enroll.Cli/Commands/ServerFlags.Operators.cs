using System.CommandLine;
using Enroll.Cli.Infrastructure;
using Enroll.Server;

namespace Enroll.Cli.Commands;

internal static partial class ServerFlags
{
    private const string SessionLifetimeFlag = "--session-lifetime";

    static partial void AddOperatorFlags(Command command) =>
        command.Options.Add(CliOptions.Duration(SessionLifetimeFlag, "How long a console session lasts after sign-in; it also ends after an hour idle", "12h"));

    static partial void ApplyOperatorFlags(ParseResult parse, EnrollServerOptions options) =>
        options.SessionLifetime = Durations.Parse(parse.GetValue<string>(SessionLifetimeFlag)!);
}
