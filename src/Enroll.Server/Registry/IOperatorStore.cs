namespace Enroll.Server.Registry;

/// <summary>Operator accounts and their console sessions (issue 15).</summary>
internal interface IOperatorStore;
