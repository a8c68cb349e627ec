#include <criterion/criterion.h>
Test(autodiff, stub) {}
