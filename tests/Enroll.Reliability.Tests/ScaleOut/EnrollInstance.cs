using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using Enroll.Protocol.Admin;
using Enroll.Reliability.Tests.Harness;
using Xunit.Abstractions;

namespace Enroll.Reliability.Tests.ScaleOut;

/// <summary>
/// One <c>enroll server</c> instance as a child process on an external broker and PostgreSQL: the built executable, with
/// its own data folder, HTTP port and broker client ID stem (<c>{id}-requests</c>, <c>{id}-ingest</c>). It can be
/// killed with SIGKILL and started again on the same data folder and client ID, or stopped with SIGTERM. Every line it
/// writes goes to the test output with its name and is kept, so a test can count what this instance served.
/// </summary>
internal sealed class EnrollInstance : IAsyncDisposable
{
    /// <summary>Logged once the request connection subscribed (event 40).</summary>
    public const string ServingRequests = "Serving requests through the external broker";

    /// <summary>Logged once the ingest connection subscribed (event 43).</summary>
    public const string TakingMessages = "Taking device messages from the external broker";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(45);
    private readonly IReadOnlyList<string> _arguments;
    private readonly IReadOnlyDictionary<string, string> _environment;
    private readonly ITestOutputHelper _output;
    private readonly List<string> _lines = [];
    private Process? _process;
    private HttpClient? _http;
    private int _run;

    public EnrollInstance(string name, string dataDirectory, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string> environment, ITestOutputHelper output)
    {
        Name = name;
        DataDirectory = dataDirectory;
        HttpPort = FreePort();
        _arguments = arguments;
        _environment = environment;
        _output = output;
    }

    /// <summary>The instance's name, which is also its broker client ID stem (<c>--broker-client-id</c>).</summary>
    public string Name { get; }

    public string DataDirectory { get; }

    public int HttpPort { get; }

    public Uri HttpEndpoint => new($"http://127.0.0.1:{HttpPort}");

    /// <summary>The HTTP API with the admin key of this instance's data folder (valid once it started).</summary>
    public HttpClient Http => _http ?? throw new InvalidOperationException($"{Name} has not started");

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Every line the instance wrote, over all its runs.</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>How many lines contain <paramref name="text"/>.</summary>
    public int Count(string text) => Lines.Count(l => l.Contains(text, StringComparison.Ordinal));

    /// <summary>Lines of "Device … registered (…) by client {client}" (event 6): registrations this instance served.</summary>
    public IReadOnlyList<string> Registrations => Lines.Where(l => l.Contains(" registered (", StringComparison.Ordinal) && l.Contains("Enroll.Server", StringComparison.Ordinal)).ToList();

    /// <summary>Registrations this instance served for <paramref name="clientId"/>.</summary>
    public int RegistrationsOf(string clientId) => Registrations.Count(l => l.Contains($" by client {clientId} in ", StringComparison.Ordinal));

    /// <summary>Messages this instance took from its ingest session and stored (event 46, Debug).</summary>
    public int MessagesStored => Count("from the external broker: Stored");

    /// <summary>Messages this instance took again after they had been stored already (a redelivery, de-duplicated).</summary>
    public int MessagesDuplicate => Count("from the external broker: Duplicate");

    /// <summary>Starts the process and waits until its HTTP API answers and both broker connections subscribed.</summary>
    public async Task StartAsync()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException($"{Name} is running already");
        }

        var run = ++_run;
        var start = new ProcessStartInfo(EnrollProcess.Executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { "server", "--http-port", HttpPort.ToString(CultureInfo.InvariantCulture), "--mqtt-port", FreePort().ToString(CultureInfo.InvariantCulture), "--data-dir", DataDirectory, "--broker-client-id", Name }.Concat(_arguments))
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in _environment)
        {
            start.Environment[key] = value;
        }

        var servingBefore = Count(ServingRequests);
        var takingBefore = Count(TakingMessages);
        var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {EnrollProcess.Executable}");
        _process = process;
        process.OutputDataReceived += (_, e) => OnLine(run, e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(run, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{Name} exited with code {process.ExitCode} while starting: {string.Join(Environment.NewLine, Lines.TakeLast(20))}");
            }

            if (deadline.Elapsed > StartTimeout)
            {
                throw new TimeoutException($"{Name} did not become ready within {StartTimeout}: {string.Join(Environment.NewLine, Lines.TakeLast(20))}");
            }

            if (Count(ServingRequests) > servingBefore && Count(TakingMessages) > takingBefore && await AnswersHealthAsync(probe))
            {
                break;
            }

            await Task.Delay(50); // the server announces readiness only in its log and on /healthz
        }

        _http?.Dispose();
        _http = new HttpClient { BaseAddress = HttpEndpoint, Timeout = TimeSpan.FromSeconds(20) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(Path.Combine(DataDirectory, "admin.key"))).Trim());
    }

    private async Task<bool> AnswersHealthAsync(HttpClient probe)
    {
        try
        {
            using var response = await probe.GetAsync(new Uri(HttpEndpoint, "/healthz"));
            return response.IsSuccessStatusCode;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>SIGKILL: no shutdown, no flush, no DISCONNECT; the broker sees the connections drop.</summary>
    /// <summary>
    /// SIGSTOP: the process stops reading its sockets but keeps them open, so the broker goes on handing it requests and
    /// messages that it never answers — an instance hung with work in flight. <see cref="KillAsync"/> ends it.
    /// </summary>
    public async Task FreezeAsync()
    {
        var process = _process ?? throw new InvalidOperationException($"{Name} has not started");
        using var stop = Process.Start(new ProcessStartInfo("kill", ["-STOP", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("cannot run kill");
        await stop.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        if (stop.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -STOP {process.Id} exited with {stop.ExitCode}");
        }

        Write($"{Name}: ---- frozen (SIGSTOP) ----");
    }

    public async Task KillAsync()
    {
        var process = _process ?? throw new InvalidOperationException($"{Name} has not started");
        process.Kill();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Write($"{Name}: ---- killed (SIGKILL) ----");
    }

    /// <summary>SIGTERM, the clean stop a service manager sends; SIGKILL if it has not ended within 15 s.</summary>
    public async Task StopAsync()
    {
        if (_process is not { HasExited: false } process)
        {
            return;
        }

        await Enroll.Testing.ExternalTools.RunAsync("/bin/kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(5));
        try
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
        }
        catch (TimeoutException)
        {
            process.Kill();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>Creates a Provisioning Token through this instance's API.</summary>
    public async Task<string> CreateTokenAsync(bool autoApprove, string orgId = "scale-out")
    {
        using var response = await Http.PostAsJsonAsync("/api/tokens", new CreateProvisioningTokenRequest { OrgId = orgId, AutoApprove = autoApprove }, AdminJsonContext.Default.CreateProvisioningTokenRequest);
        await EnsureSuccessAsync(response, "create a token");
        return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.ProvisioningTokenInfo))!.Token!;
    }

    public async Task<IReadOnlyList<ProvisioningOperationInfo>> ListOperationsAsync(string status) =>
        (await Http.GetFromJsonAsync($"/api/provisioning-operations?status={status}", AdminJsonContext.Default.ItemListProvisioningOperationInfo))!.Items;

    public async Task<ProvisioningOperationInfo> ApproveAsync(string operationId)
    {
        using var response = await Http.PostAsJsonAsync($"/api/provisioning-operations/{operationId}/approve", new OperationDecisionRequest(), AdminJsonContext.Default.OperationDecisionRequest);
        await EnsureSuccessAsync(response, $"approve {operationId}");
        return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.ProvisioningOperationInfo))!;
    }

    public async Task<DeviceInfo> RevokeDeviceAsync(string deviceId)
    {
        using var response = await Http.PostAsync($"/api/devices/{deviceId}/revoke", null);
        await EnsureSuccessAsync(response, $"revoke {deviceId}");
        return (await response.Content.ReadFromJsonAsync(AdminJsonContext.Default.DeviceInfo))!;
    }

    public async Task<IReadOnlyList<MessageInfo>> ListMessagesAsync(string deviceId) =>
        (await Http.GetFromJsonAsync($"/api/messages?device={deviceId}&limit=1000", AdminJsonContext.Default.ItemListMessageInfo))!.Items;

    private async Task EnsureSuccessAsync(HttpResponseMessage response, string what)
    {
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"{Name}: {what}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }

    private void OnLine(int run, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lines)
        {
            _lines.Add(line);
        }

        // Per-message lines (event 46) are counted, not shown: a load test would bury everything else under them.
        if (!line.Contains("from the external broker: ", StringComparison.Ordinal))
        {
            Write($"{Name}#{run}: {line}");
        }
    }

    private void Write(string line)
    {
        try
        {
            _output.WriteLine(line);
        }
        catch (InvalidOperationException)
        {
            // The test already ended.
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _process?.Dispose();
        _http?.Dispose();
    }
}
