using System.Reflection;
using System.Reflection.Emit;

namespace Enroll.Server.Tests.Architecture;

/// <summary>
/// Which namespaces of an assembly use which, read from its metadata and IL: base types, interfaces, fields, properties,
/// method signatures, attributes, and every type, method and field a method body names (async state machines and
/// lambdas are nested types, so they count for the namespace of the type that wrote them).
/// </summary>
internal static class NamespaceDependencies
{
    private const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    /// <summary>
    /// For each namespace of <paramref name="assembly"/> under <paramref name="root"/>, the other such namespaces it uses.
    /// The root namespace itself is two nodes: its types that use no namespace below it are contracts every part may use
    /// (<paramref name="root"/>), and the others compose the parts (<see cref="CompositionRoot"/>).
    /// </summary>
    public static Dictionary<string, HashSet<string>> Of(Assembly assembly, string root)
    {
        var below = root + ".";
        bool Inside(string? name) => name is not null && (name == root || name.StartsWith(below, StringComparison.Ordinal));

        // Nested types (async state machines, lambdas' closures) count for the type that wrote them.
        var uses = new Dictionary<Type, HashSet<Type>>();
        foreach (var type in assembly.GetTypes().Where(t => Inside(t.Namespace)))
        {
            var outer = Outermost(type);
            var set = uses.TryGetValue(outer, out var found) ? found : uses[outer] = [];
            foreach (var used in UsedTypes(type).SelectMany(Flatten))
            {
                if (used.Assembly == assembly && Inside(used.Namespace))
                {
                    set.Add(Outermost(used));
                }
            }
        }

        string Node(Type type) => type.Namespace != root
            ? type.Namespace!
            : uses.GetValueOrDefault(type)?.Any(u => u.Namespace != root) == true ? CompositionRoot(root) : root;

        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (type, used) in uses)
        {
            var from = Node(type);
            var edges = graph.TryGetValue(from, out var found) ? found : graph[from] = new HashSet<string>(StringComparer.Ordinal);
            foreach (var to in used.Select(Node).Where(n => n != from))
            {
                edges.Add(to);
            }
        }

        return graph;
    }

    /// <summary>The node of the root namespace's types that compose the parts.</summary>
    public static string CompositionRoot(string root) => root + " (composition root)";

    private static Type Outermost(Type type)
    {
        while (type.DeclaringType is { } outer)
        {
            type = outer;
        }

        return type;
    }

    /// <summary>The first cycle found in <paramref name="graph"/> as a path (first node repeated at the end), or null.</summary>
    public static IReadOnlyList<string>? FindCycle(IReadOnlyDictionary<string, HashSet<string>> graph)
    {
        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1 = on the path, 2 = done
        var path = new List<string>();

        List<string>? Visit(string node)
        {
            state[node] = 1;
            path.Add(node);
            foreach (var next in graph.TryGetValue(node, out var edges) ? edges.Order(StringComparer.Ordinal) : Enumerable.Empty<string>())
            {
                if (state.GetValueOrDefault(next) == 1)
                {
                    return [.. path.Skip(path.IndexOf(next)), next];
                }

                if (state.GetValueOrDefault(next) == 0 && Visit(next) is { } cycle)
                {
                    return cycle;
                }
            }

            path.RemoveAt(path.Count - 1);
            state[node] = 2;
            return null;
        }

        foreach (var node in graph.Keys.Order(StringComparer.Ordinal))
        {
            if (state.GetValueOrDefault(node) == 0 && Visit(node) is { } cycle)
            {
                return cycle;
            }
        }

        return null;
    }

    /// <summary>The type itself, its element type and its generic arguments, recursively.</summary>
    private static IEnumerable<Type> Flatten(Type type)
    {
        if (type.HasElementType)
        {
            foreach (var inner in Flatten(type.GetElementType()!))
            {
                yield return inner;
            }

            yield break;
        }

        if (type.IsGenericParameter)
        {
            yield break;
        }

        yield return type.IsGenericType && !type.IsGenericTypeDefinition ? type.GetGenericTypeDefinition() : type;
        if (type.IsGenericType)
        {
            foreach (var inner in type.GetGenericArguments().SelectMany(Flatten))
            {
                yield return inner;
            }
        }
    }

    private static IEnumerable<Type> UsedTypes(Type type)
    {
        if (type.BaseType is { } baseType)
        {
            yield return baseType;
        }

        foreach (var item in type.GetInterfaces())
        {
            yield return item;
        }

        foreach (var attribute in type.GetCustomAttributesData())
        {
            yield return attribute.AttributeType;
        }

        foreach (var field in type.GetFields(Everything))
        {
            yield return field.FieldType;
        }

        foreach (var property in type.GetProperties(Everything))
        {
            yield return property.PropertyType;
        }

        foreach (var method in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
        {
            if (method is MethodInfo info)
            {
                yield return info.ReturnType;
            }

            foreach (var parameter in method.GetParameters())
            {
                yield return parameter.ParameterType;
            }

            foreach (var used in BodyTypes(method))
            {
                yield return used;
            }
        }
    }

    /// <summary>The types, and the declaring types of the methods and fields, a method body refers to.</summary>
    private static IEnumerable<Type> BodyTypes(MethodBase method)
    {
        var body = method.GetMethodBody();
        if (body is null)
        {
            yield break;
        }

        foreach (var local in body.LocalVariables)
        {
            yield return local.LocalType;
        }

        var il = body.GetILAsByteArray() ?? [];
        var typeArguments = method.DeclaringType is { IsGenericType: true } declaring ? declaring.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        var position = 0;
        while (position < il.Length)
        {
            short value = il[position++];
            if (value == 0xFE)
            {
                value = (short)(0xFE00 | il[position++]);
            }

            var opCode = OpCodesByValue[value];
            switch (opCode.OperandType)
            {
                case OperandType.InlineType or OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineTok:
                    var token = BitConverter.ToInt32(il, position);
                    position += 4;
                    MemberInfo? member;
                    try
                    {
                        member = method.Module.ResolveMember(token, typeArguments, methodArguments);
                    }
                    catch (ArgumentException)
                    {
                        member = null; // a token this module cannot resolve without more context; signatures cover it
                    }

                    if (member is Type used)
                    {
                        yield return used;
                    }
                    else if (member is not null)
                    {
                        if (member.DeclaringType is { } owner)
                        {
                            yield return owner;
                        }

                        if (member is MethodInfo { IsGenericMethod: true } generic)
                        {
                            foreach (var argument in generic.GetGenericArguments())
                            {
                                yield return argument;
                            }
                        }
                    }

                    break;
                case OperandType.InlineSwitch:
                    var count = BitConverter.ToInt32(il, position);
                    position += 4 + (4 * count);
                    break;
                default:
                    position += OperandSize(opCode.OperandType);
                    break;
            }
        }
    }

    private static int OperandSize(OperandType operand) => operand switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        _ => 4,
    };
}
