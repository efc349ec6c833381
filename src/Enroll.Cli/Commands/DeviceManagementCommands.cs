using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Enroll.Cli.Infrastructure;
using Enroll.Device;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Enroll.Cli.Commands;

/// <summary><c>enroll device twin</c> and <c>enroll device report</c>: the device's side of its twin, from its state folder.</summary>
internal static class DeviceManagementCommands
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static Command Twin()
    {
        var state = DeviceCommand.StateOption();
        var json = CliOptions.Json();
        var command = new Command("twin", "Show the device's twin from its state folder: the desired state as applied, with its version, and the reported state (changing nothing)")
        {
            state, json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await DeviceCommand.RunDevice(output, async () =>
            {
                var statePath = Path.GetFullPath(parse.GetValue(state)!);
                var twin = File.Exists(Path.Combine(statePath, "management.db"))
                    ? await DeviceTwin.ReadAsync(statePath, cancellationToken)
                    : new DeviceTwinSnapshot([], 0, [], []);
                if (parse.GetValue(json))
                {
                    var document = new JsonObject
                    {
                        ["state_path"] = statePath,
                        ["desired_version"] = twin.DesiredVersion,
                        ["desired"] = twin.Desired,
                        ["reported"] = twin.Reported,
                        ["report_pending"] = twin.ReportPending,
                    };
                    output.Line(document.ToJsonString(Indented));
                }
                else
                {
                    output.Line($"Desired (version {twin.DesiredVersion}, as applied):");
                    output.Line(twin.Desired.ToJsonString(Indented));
                    output.Line($"Reported{(twin.ReportPending ? " (changes not yet acknowledged by the server)" : string.Empty)}:");
                    output.Line(twin.Reported.ToJsonString(Indented));
                }

                return ExitCodes.Ok;
            });
        });
        return command;
    }

    public static Command Report()
    {
        var options = new DeviceCommand.DeviceOptions();
        var data = new Option<string>("--data") { Description = "A JSON merge patch (RFC 7396) to the reported state, for example {\"firmware\":\"1.2\"}", Required = true };
        var timeout = CliOptions.Duration("--timeout", "When no agent runs: how long to wait for the server's acknowledgement", "30s");
        var command = new Command(
            "report",
            "Merge a patch into the device's reported state, stored in the state folder (durable when it returns); a running agent delivers it, else this command connects once and waits for the server's acknowledgement")
        {
            data, timeout,
        };
        options.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var output = new Output(parse);
            return await DeviceCommand.RunDevice(output, async () =>
            {
                JsonObject patch;
                try
                {
                    patch = JsonNode.Parse(parse.GetValue(data)!) as JsonObject ?? throw new CliUsageException("--data must be a JSON object (a merge patch to the reported state)");
                }
                catch (JsonException ex)
                {
                    throw new CliUsageException($"--data is not JSON: {ex.Message}");
                }

                var statePath = Path.GetFullPath(parse.GetValue(options.State)!);
                JsonObject reported;
                try
                {
                    reported = await DeviceTwin.QueueReportAsync(statePath, patch, cancellationToken);
                }
                catch (ArgumentException ex)
                {
                    throw new CliUsageException(ex.Message);
                }

                if (DeviceStateReader.ReadHealth(statePath) is { } health && DeviceStateReader.IsAlive(health))
                {
                    output.Line($"Stored; the running agent (pid {health.Pid}) delivers it. Reported state: {reported.ToJsonString()}");
                    return ExitCodes.Ok;
                }

                // No agent: connect once (commands off, so no command is answered without its handler) until the twin
                // synchronized, which sends every report the server has not acknowledged.
                await using var provider = await options.BuildAsync(parse, configure: o => o.ReceiveCommands = false);
                var twin = provider.GetRequiredService<DeviceTwin>();
                var synchronized = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                twin.Synchronized += (_, _) => synchronized.TrySetResult();
                var hosted = provider.GetServices<IHostedService>().ToList();
                foreach (var service in hosted)
                {
                    await service.StartAsync(cancellationToken);
                }

                var limit = parse.GetDuration(timeout);
                try
                {
                    await synchronized.Task.WaitAsync(limit, cancellationToken);
                }
                catch (TimeoutException)
                {
                    return output.Fail(ExitCodes.Unreachable, $"the report is stored in {statePath} but the server did not acknowledge it within {Durations.Format(limit)}; the agent ({DeviceCommand.Prefix} run) or the next {DeviceCommand.Prefix} report delivers it");
                }
                finally
                {
                    foreach (var service in Enumerable.Reverse(hosted))
                    {
                        await service.StopAsync(CancellationToken.None);
                    }
                }

                var after = await DeviceTwin.ReadAsync(statePath, cancellationToken);
                if (after.ReportPending)
                {
                    return output.Fail(ExitCodes.Refused, $"the server did not take the report (see {DeviceCommand.Prefix} status); reported state kept in {statePath}: {after.Reported.ToJsonString()}");
                }

                output.Line($"Reported: {after.Reported.ToJsonString()}");
                return ExitCodes.Ok;
            });
        });
        return command;
    }
}

/// <summary>
/// <c>enroll device run --command-handler PROGRAM</c>: hands every command to PROGRAM, with the command name as its only
/// argument and the payload JSON on standard input. Exit code 0 is <c>succeeded</c> with standard output as the result
/// payload (JSON when it parses, else a JSON string; nothing: no payload); any other exit code is <c>failed</c> with standard
/// error as the message. The program is killed (with its process tree) when the command expires.
/// </summary>
internal sealed class CommandHandlerProgram(string program)
{
    /// <summary>The longest message kept from the program's standard error.</summary>
    private const int MaxMessageChars = 4096;

    public string Program { get; } = program;

    public async Task<CommandResult> RunAsync(DeviceCommandRequest request, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(Program)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(request.Name);
        start.Environment["ENROLL_COMMAND_ID"] = request.CommandId;
        if (request.ExpiresAt is { } expiresAt)
        {
            start.Environment["ENROLL_COMMAND_EXPIRES_AT"] = expiresAt.ToUniversalTime().ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"{Program} did not start");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return CommandResult.Failed($"the command handler {Program} cannot be started: {ex.Message}");
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
            try
            {
                await process.StandardInput.WriteAsync(request.Payload?.ToJsonString() ?? "null");
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // The program does not read its input; that is its business.
            }

            try
            {
                await process.WaitForExitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                // The command expired (or the agent stops): the program does not outlive it.
                process.Kill(entireProcessTree: true);
                throw;
            }

            var output = (await stdout).Trim();
            var error = (await stderr).Trim();
            if (process.ExitCode != 0)
            {
                var message = error.Length > 0 ? error : $"{Program} exited with code {process.ExitCode}";
                return CommandResult.Failed(message.Length > MaxMessageChars ? message[..MaxMessageChars] : message);
            }

            if (output.Length == 0)
            {
                return CommandResult.Succeeded();
            }

            try
            {
                return CommandResult.Succeeded(JsonNode.Parse(output));
            }
            catch (JsonException)
            {
                return CommandResult.Succeeded(JsonValue.Create(output));
            }
        }
    }
}
