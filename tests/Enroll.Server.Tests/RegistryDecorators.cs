using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.ExceptionServices;
using Enroll.Server.Registry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Enroll.Server.Tests;

/// <summary>
/// Decorators around the server's real registry, put in its place the documented way (docs/operations.md, "Extending
/// the server"): the registered store is kept under a key, and the decorator replaces <see cref="IRegistry"/>.
/// </summary>
internal static class RegistryDecorators
{
    public static void Decorate(IServiceCollection services, Func<IRegistry, IRegistry> wrap)
    {
        var store = services.Single(d => d.ServiceType == typeof(IRegistry));
        services.Add(ServiceDescriptor.KeyedSingleton(typeof(IRegistry), "store", (sp, _) => store.ImplementationFactory is { } factory ? factory(sp) : store.ImplementationInstance ?? ActivatorUtilities.CreateInstance(sp, store.ImplementationType!)));
        services.Replace(ServiceDescriptor.Singleton(sp => wrap(sp.GetRequiredKeyedService<IRegistry>("store"))));
    }

    /// <summary>Calls <paramref name="method"/> on <paramref name="inner"/>, with its own exception rather than a TargetInvocationException.</summary>
    public static object? Forward(IRegistry inner, MethodInfo method, object?[]? args)
    {
        try
        {
            return method.Invoke(inner, args);
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            ExceptionDispatchInfo.Throw(ex.InnerException);
            throw;
        }
    }
}

/// <summary>Records the name of every registry call it passes on.</summary>
public class CountingRegistry : DispatchProxy
{
    private IRegistry _inner = null!;
    private ConcurrentQueue<string> _calls = null!;

    internal static IRegistry Wrap(IRegistry inner, ConcurrentQueue<string> calls)
    {
        var proxy = Create<IRegistry, CountingRegistry>();
        var counting = (CountingRegistry)(object)proxy;
        counting._inner = inner;
        counting._calls = calls;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        _calls.Enqueue(targetMethod.Name);
        return RegistryDecorators.Forward(_inner, targetMethod, args);
    }
}

/// <summary>
/// Holds every registry call while closed: a request handler that reaches the registry then waits, and with one handler
/// (<see cref="EnrollServerOptions.HandlerConcurrency"/> = 1) the whole request queue waits behind it.
/// </summary>
public class GatedRegistry : DispatchProxy
{
    private IRegistry _inner = null!;
    private RegistryGate _gate = null!;

    internal static IRegistry Wrap(IRegistry inner, RegistryGate gate)
    {
        var proxy = Create<IRegistry, GatedRegistry>();
        var gated = (GatedRegistry)(object)proxy;
        gated._inner = inner;
        gated._gate = gate;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        if (!_gate.IsClosed)
        {
            return RegistryDecorators.Forward(_inner, targetMethod, args);
        }

        if (targetMethod.ReturnType == typeof(Task))
        {
            return AfterGateAsync(targetMethod, args);
        }

        return typeof(GatedRegistry).GetMethod(nameof(AfterGateWithResultAsync), BindingFlags.NonPublic | BindingFlags.Instance)!
            .MakeGenericMethod(targetMethod.ReturnType.GetGenericArguments()[0])
            .Invoke(this, [targetMethod, args]);
    }

    private async Task AfterGateAsync(MethodInfo method, object?[]? args)
    {
        await _gate.PassAsync();
        await (Task)RegistryDecorators.Forward(_inner, method, args)!;
    }

    private async Task<T> AfterGateWithResultAsync<T>(MethodInfo method, object?[]? args)
    {
        await _gate.PassAsync();
        return await (Task<T>)RegistryDecorators.Forward(_inner, method, args)!;
    }
}

/// <summary>The gate of a <see cref="GatedRegistry"/>: open until <see cref="Close"/>, and <see cref="Held"/> once a call waits at it.</summary>
public sealed class RegistryGate
{
    private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _closed;

    public bool IsClosed => _closed;

    /// <summary>Completes when the first call waits at the closed gate.</summary>
    public Task Held => _held.Task;

    public void Close() => _closed = true;

    public void Open()
    {
        _closed = false;
        _open.TrySetResult();
    }

    internal Task PassAsync()
    {
        _held.TrySetResult();
        return _open.Task;
    }
}
