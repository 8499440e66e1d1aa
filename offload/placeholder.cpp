// Placeholder so the library has a source until the first offload module lands.
namespace moetier::offload {}
