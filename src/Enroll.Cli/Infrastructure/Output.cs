using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Spectre.Console;

namespace Enroll.Cli.Infrastructure;

/// <summary>Where a command writes: text (through Spectre.Console) or JSON to standard output, problems to standard error.</summary>
internal sealed class Output
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public Output(ParseResult parseResult)
    {
        Out = parseResult.InvocationConfiguration.Output;
        Error = parseResult.InvocationConfiguration.Error;
        Verbose = CliOptions.IsVerbose(parseResult);
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Out),
            Ansi = Out == System.Console.Out ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = Out == System.Console.Out ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = Out == System.Console.Out ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (Out != System.Console.Out || System.Console.IsOutputRedirected)
        {
            // Redirected output has no terminal width; do not wrap tables at 80 columns.
            Console.Profile.Width = 240;
        }
    }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    public IAnsiConsole Console { get; }

    /// <summary>True with <c>--verbose</c>.</summary>
    public bool Verbose { get; }

    public void Json<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        var json = JsonSerializer.Serialize(value, typeInfo);
        using var document = JsonDocument.Parse(json);
        Out.WriteLine(JsonSerializer.Serialize(document.RootElement, Indented));
    }

    public void Line(string text) => Out.WriteLine(text);

    /// <summary>Writes <paramref name="exception"/> as the CLI contract says (see <see cref="Failures"/>) and returns its exit code.</summary>
    public int Fail(Exception exception) => Failures.Report(Error, exception, Verbose);

    /// <summary>Writes one line to standard error and returns <paramref name="exitCode"/>.</summary>
    public int Fail(int exitCode, string message)
    {
        Error.WriteLine($"enroll: {message}");
        return exitCode;
    }
}
