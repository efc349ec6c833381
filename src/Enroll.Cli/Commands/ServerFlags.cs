using System.CommandLine;
using Enroll.Server;

namespace Enroll.Cli.Commands;

/// <summary>The <c>enroll server</c> flags of the operator accounts, observability and console API parts.</summary>
internal static partial class ServerFlags
{
    static partial void AddOperatorFlags(Command command);

    static partial void ApplyOperatorFlags(ParseResult parse, EnrollServerOptions options);

    static partial void AddObservabilityFlags(Command command);

    static partial void ApplyObservabilityFlags(ParseResult parse, EnrollServerOptions options);

    static partial void AddConsoleFlags(Command command);

    static partial void ApplyConsoleFlags(ParseResult parse, EnrollServerOptions options);

    static partial void AddOverviewFlags(Command command);

    static partial void ApplyOverviewFlags(ParseResult parse, EnrollServerOptions options);

    static partial void AddDeviceStatusFlags(Command command);

    static partial void ApplyDeviceStatusFlags(ParseResult parse, EnrollServerOptions options);

    public static void AddOperators(Command command) => AddOperatorFlags(command);

    public static void ApplyOperators(ParseResult parse, EnrollServerOptions options) => ApplyOperatorFlags(parse, options);

    public static void AddObservability(Command command) => AddObservabilityFlags(command);

    public static void ApplyObservability(ParseResult parse, EnrollServerOptions options) => ApplyObservabilityFlags(parse, options);

    public static void AddConsole(Command command)
    {
        AddConsoleFlags(command);
        AddOverviewFlags(command);
        AddDeviceStatusFlags(command);
    }

    public static void ApplyConsole(ParseResult parse, EnrollServerOptions options)
    {
        ApplyConsoleFlags(parse, options);
        ApplyOverviewFlags(parse, options);
        ApplyDeviceStatusFlags(parse, options);
    }
}
