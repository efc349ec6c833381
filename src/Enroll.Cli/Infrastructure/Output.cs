using System.Buffers;
using System.CommandLine;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Spectre.Console;

namespace Enroll.Cli.Infrastructure;

/// <summary>Where a command writes: text (through Spectre.Console) or JSON to standard output, problems to standard error.</summary>
internal sealed class Output
{
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
        // Serialized through the source-generated type info, then indented by a writer (no reflection: the device agent
        // is trimmed and compiled ahead of time).
        var json = JsonSerializer.SerializeToUtf8Bytes(value, typeInfo);
        using var document = JsonDocument.Parse(json);
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            document.RootElement.WriteTo(writer);
        }

        Out.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    public void Line(string text) => Out.WriteLine(text);

    /// <summary>Writes <paramref name="exception"/> as the CLI contract says (see <see cref="Failures"/>) and returns its exit code.</summary>
    public int Fail(Exception exception) => Failures.Report(Error, exception, Verbose);

    /// <summary>Writes one line to standard error and returns <paramref name="exitCode"/>.</summary>
    public int Fail(int exitCode, string message)
    {
        Error.WriteLine($"{Failures.Program}: {message}");
        return exitCode;
    }
}
