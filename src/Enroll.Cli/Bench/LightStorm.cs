using System.Diagnostics;
using System.Text.Json;
using Enroll.Protocol.Json;
using Enroll.Protocol.Messages;
using Enroll.Protocol.Topics;

namespace Enroll.Cli.Bench;

/// <summary>
/// The storm for fleets too large for one load generator to hold as device library instances (100,000 devices): each
/// device is a <see cref="LightSession"/> that behaves as the device library does on the wire — connect, subscribe to its
/// response topics and the key set, send <c>enroll/v1/register</c> with a 10 s message expiry, wait up to the 10 s
/// attempt timeout, honour <c>retry_after_seconds</c> when the server answers <c>unavailable</c>, and otherwise back off
/// as the device library does (1 s doubling to 60 s, spread over the upper half) — and stops once registered. The tokens are not verified and nothing is
/// stored on the device side: it is the server under test.
/// </summary>
internal static class LightStorm
{
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan InitialBackoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(60);

    /// <summary>What the storm saw: seconds from the start until each device registered (NaN: never), and attempts per device.</summary>
    public sealed record Result(double[] RegisteredAt, int[] Attempts, long Unavailable, long TimedOut, string? LastFailure);

    /// <summary>Runs the storm; <paramref name="next"/> (thread-safe, in [0, 1)) is the devices' jitter source.</summary>
    public static async Task<Result> RunAsync(Uri broker, string token, int devices, TimeSpan timeout, Func<double> next, Action<string> progress, Func<long?> serverMemory, Action<long> peak)
    {
        var registeredAt = new double[devices];
        Array.Fill(registeredAt, double.NaN);
        var attempts = new int[devices];
        long unavailable = 0, timedOut = 0, registered = 0;
        string? lastFailure = null;
        var prefix = $"light-{Guid.NewGuid():N}"[..12];
        using var stop = new CancellationTokenSource(timeout);
        var clock = Stopwatch.StartNew();
        var all = Task.WhenAll(Enumerable.Range(0, devices).Select(i => Task.Run(async () =>
        {
            var clientId = $"{prefix}-{i:D6}";
            var payload = JsonSerializer.SerializeToUtf8Bytes(new RegistrationRequest { ClientId = clientId, ProvisioningToken = token }, EnrollJsonContext.Default.RegistrationRequest);
            var failures = 0;
            LightSession? session = null;
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        session ??= await LightSession.OpenAsync(broker, LightSession.SourceAddress(i), clientId, stop.Token);
                        Interlocked.Increment(ref attempts[i]);
                        var answer = await session.RequestAsync(EnrollTopics.Register, payload, (uint)AttemptTimeout.TotalSeconds, AttemptTimeout, stop.Token);
                        if (answer is null)
                        {
                            Interlocked.Increment(ref timedOut);
                            failures++;
                            await Task.Delay(Backoff(failures, next), stop.Token);
                            continue;
                        }

                        var response = JsonSerializer.Deserialize(answer, EnrollJsonContext.Default.RegistrationResponse);
                        if (response is { Error: null, JwtToken: not null })
                        {
                            registeredAt[i] = clock.Elapsed.TotalSeconds;
                            Interlocked.Increment(ref registered);
                            return;
                        }

                        if (response?.Error is { Code: "unavailable", RetryAfterSeconds: { } seconds })
                        {
                            Interlocked.Increment(ref unavailable);
                            await Task.Delay(TimeSpan.FromSeconds(Math.Clamp(seconds, 1, 3600)), stop.Token);
                            continue;
                        }

                        lastFailure = response?.Error is { } error ? $"{error.Code}: {error.Message}" : "an answer without tokens";
                        failures++;
                        await Task.Delay(Backoff(failures, next), stop.Token);
                    }
                    catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or JsonException)
                    {
                        // The connection failed (a refused or dropped socket): back off and connect again, as a device does.
                        lastFailure = ex.Message;
                        session?.Dispose();
                        session = null;
                        failures++;
                        await Task.Delay(Backoff(failures, next), stop.Token);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            finally
            {
                session?.Dispose();
            }
        })));

        while (!all.IsCompleted)
        {
            if (serverMemory() is { } memory)
            {
                peak(memory);
            }

            await Task.WhenAny(all, Task.Delay(2000));
            progress($"{clock.Elapsed.TotalSeconds,6:0.0} s  registered {Interlocked.Read(ref registered):N0}/{devices:N0}  unavailable answers {Interlocked.Read(ref unavailable):N0}  timed out {Interlocked.Read(ref timedOut):N0}");
        }

        await all;
        return new Result(registeredAt, attempts, unavailable, timedOut, lastFailure);
    }

    // As the device library's Jitter.Backoff: the delay doubles from 1 s to 60 s, then is spread over its upper half.
    private static TimeSpan Backoff(int failures, Func<double> next)
    {
        var delay = Math.Min(MaxBackoff.TotalMilliseconds, InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Clamp(failures - 1, 0, 30)));
        return TimeSpan.FromMilliseconds(delay * (0.5 + (next() * 0.5)));
    }
}
