using System.Collections;
using System.CommandLine;
using Enroll.Testing;

namespace Enroll.Agent.Tests.Configuration;

/// <summary>
/// The agent's settings: the configuration file, then <c>ENROLL_AGENT_*</c> variables, then flags (each wins over the one
/// before); an unknown key or a bad value is exit code 2 with one line naming the key and where it came from.
/// </summary>
public sealed class AgentConfigurationTests : IDisposable
{
    private readonly TempDirectory _folder = new("agent-config");

    private string ConfigPath => Path.Combine(_folder.Path, "agent.json");

    // No /etc/enroll/agent.json of this machine may leak into a test: the default path is one that does not exist.
    private string AbsentDefault => Path.Combine(_folder.Path, "absent", "agent.json");

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void FileThenEnvironmentThenFlags_EachWinsOverTheOneBefore()
    {
        File.WriteAllText(ConfigPath, """
            // comments and trailing commas are allowed in the file
            {
              "broker": "mqtt://from-file:1883",
              "clientId": "from-file",
              "maxAttempts": 3,
              "state": "/var/lib/from-file",
              "encrypt": true,
            }
            """);
        var environment = new Hashtable
        {
            ["ENROLL_AGENT_CONFIG"] = ConfigPath,
            ["ENROLL_AGENT_BROKER"] = "mqtt://from-environment:1883",
            ["ENROLL_AGENT_CLIENT_ID"] = "from-environment",
            ["UNRELATED"] = "ignored",
        };
        string[] args = ["run", "--client-id", "from-flag"];

        var configuration = AgentConfiguration.Load(args, environment, AbsentDefault);
        var parse = AgentCli.Build(configuration).Parse(args);

        Assert.Empty(parse.Errors);
        Assert.Equal("from-flag", parse.GetValue<string>("--client-id"));
        Assert.Equal("mqtt://from-environment:1883", parse.GetValue<string>("--broker"));
        Assert.Equal("/var/lib/from-file", parse.GetValue<string>("--state"));
        Assert.Equal(3, parse.GetValue<int>("--max-attempts"));
        Assert.True(parse.GetValue<bool>("--encrypt"));
        Assert.Equal("60s", parse.GetValue<string>("--max-backoff")); // neither: the flag's own default
        Assert.Equal(Path.GetFullPath(ConfigPath), configuration.FilePath);
    }

    [Fact]
    public void ConfigFlag_WinsOverTheVariable_AndAFlagCanTurnASwitchOff()
    {
        var other = Path.Combine(_folder.Path, "other.json");
        File.WriteAllText(ConfigPath, """{ "clientId": "from-variable-file" }""");
        File.WriteAllText(other, """{ "clientId": "from-flag-file", "deliver": true }""");
        string[] args = ["send", "--config", other, "--stream", "s", "--data", "{}", "--deliver", "false"];

        var configuration = AgentConfiguration.Load(args, new Hashtable { ["ENROLL_AGENT_CONFIG"] = ConfigPath }, AbsentDefault);
        var parse = AgentCli.Build(configuration).Parse(args);

        Assert.Empty(parse.Errors);
        Assert.Equal("from-flag-file", parse.GetValue<string>("--client-id"));
        Assert.False(parse.GetValue<bool>("--deliver"));
    }

    [Fact]
    public void DeviceName_DoesNotBecomeTheFileNameOfUpload()
    {
        File.WriteAllText(ConfigPath, """{ "name": "Boiler room gateway" }""");
        string[] runArgs = ["register", "--config", ConfigPath];
        string[] uploadArgs = ["upload", "some.bin", "--config", ConfigPath];
        var configuration = AgentConfiguration.Load(runArgs, new Hashtable(), AbsentDefault);

        Assert.Equal("Boiler room gateway", AgentCli.Build(configuration).Parse(runArgs).GetValue<string>("--name"));
        Assert.Null(AgentCli.Build(configuration).Parse(uploadArgs).GetValue<string>("--name"));
    }

    [Fact]
    public void NoFileAtTheDefaultPath_IsNoSettings()
    {
        var configuration = AgentConfiguration.Load(["status"], new Hashtable(), AbsentDefault);

        Assert.Null(configuration.FilePath);
        Assert.Empty(configuration.Values);
        Assert.Equal("mqtt://127.0.0.1:1883", AgentCli.Build(configuration).Parse(["run"]).GetValue<string>("--broker"));
    }

    [Theory]
    [InlineData("""{ "brokr": "mqtt://x:1883" }""", "key 'brokr': unknown setting")]
    [InlineData("""{ "maxAttempts": "many" }""", "key 'maxAttempts': 'many' is not a whole number")]
    [InlineData("""{ "maxAttempts": 0 }""", "key 'maxAttempts': '0' is not a whole number of 1 or more")]
    [InlineData("""{ "attemptTimeout": "soon" }""", "key 'attemptTimeout': 'soon' is not a duration")]
    [InlineData("""{ "broker": "not a uri" }""", "key 'broker': 'not a uri' is not an absolute URI")]
    [InlineData("""{ "encrypt": "yes" }""", "key 'encrypt': 'yes' is not true or false")]
    [InlineData("""{ "logFormat": "xml" }""", "key 'logFormat': 'xml' is not \"text\" or \"json\"")]
    [InlineData("""{ "clientId": 7 }""", "key 'clientId': number is not a non-empty string")]
    [InlineData("""[ "broker" ]""", "the configuration must be a JSON object")]
    [InlineData("""{ "broker": """, "not valid JSON")]
    public async Task ABadFile_IsExitCode2_WithOneLineNamingTheFileAndTheKey(string json, string expected)
    {
        File.WriteAllText(ConfigPath, json);

        var (exit, _, error) = await RunAsync(new Hashtable(), "run", "--config", ConfigPath);

        Assert.Equal(2, exit);
        Assert.StartsWith($"enroll-agent: {Path.GetFullPath(ConfigPath)}: ", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData("ENROLL_AGENT_BROKR", "mqtt://x:1883", "environment variable ENROLL_AGENT_BROKR: unknown setting")]
    [InlineData("ENROLL_AGENT_OUTBOX_MAX_BYTES", "64MB", "environment variable ENROLL_AGENT_OUTBOX_MAX_BYTES: '64MB' is not a number of bytes")]
    [InlineData("ENROLL_AGENT_MQTT_VERSION", "6", "environment variable ENROLL_AGENT_MQTT_VERSION: '6' is not an MQTT version")]
    public async Task ABadVariable_IsExitCode2_NamingTheVariable(string name, string value, string expected)
    {
        var (exit, _, error) = await RunAsync(new Hashtable { [name] = value }, "run");

        Assert.Equal(2, exit);
        Assert.StartsWith($"enroll-agent: {expected}", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AConfigFileNamedButMissing_IsExitCode2()
    {
        var missing = Path.Combine(_folder.Path, "missing.json");

        var (exit, _, error) = await RunAsync(new Hashtable { ["ENROLL_AGENT_CONFIG"] = missing }, "run");

        Assert.Equal(2, exit);
        Assert.Contains($"ENROLL_AGENT_CONFIG={missing}: the configuration file {missing} does not exist", error, StringComparison.Ordinal);
    }

    private async Task<(int ExitCode, string Out, string Error)> RunAsync(Hashtable environment, params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var exit = await AgentCli.RunAsync(args, new InvocationConfiguration { Output = output, Error = error }, environment, AbsentDefault);
        return (exit, output.ToString(), error.ToString());
    }
}
